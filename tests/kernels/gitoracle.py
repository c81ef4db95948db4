"""The git CLI as the oracle for line counts: many blob pairs, two git processes per batch.

I/O: builds a throwaway repository with ``git fast-import`` (old blobs in one commit, new blobs
in the next) and reads one ``git diff --numstat --minimal -z`` between them.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

Pair = tuple[bytes, bytes]


def _git_env(home: Path) -> dict[str, str]:
    """No user or system configuration: diff.context, diff.algorithm etc. would change counts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    return env


def _commit(out: list[bytes], mark: int, parent: int | None, files: dict[str, bytes]) -> None:
    out.append(b"commit refs/heads/main\nmark :%d\n" % mark)
    out.append(b"committer t <t@example.com> 0 +0000\ndata 0\n")
    if parent is not None:
        out.append(b"from :%d\n" % parent)
    out.append(b"deleteall\n")
    for path, data in files.items():
        out.append(b"M 100644 inline %s\ndata %d\n" % (path.encode(), len(data)))
        out.append(data)
        out.append(b"\n")


def git_numstat(pairs: Sequence[Pair]) -> list[tuple[int, int] | None]:
    """git's ``(added, removed)`` for each pair, None where git says binary.

    An empty side is a file that does not exist in that commit, so b"" -> content is an added
    file and content -> b"" a deleted one, as the kernel sees them.
    """
    with tempfile.TemporaryDirectory(prefix="metre-oracle-") as tmp:
        root = Path(tmp)
        repo = root / "repo.git"
        env = _git_env(root)
        subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True, env=env)
        names = [f"f{i:06d}" for i in range(len(pairs))]
        stream: list[bytes] = []
        _commit(stream, 1, None, {p: o for p, (o, _) in zip(names, pairs, strict=True) if o})
        _commit(stream, 2, 1, {p: n for p, (_, n) in zip(names, pairs, strict=True) if n})
        subprocess.run(
            ["git", "-C", str(repo), "fast-import", "--quiet"],
            input=b"".join(stream),
            check=True,
            env=env,
        )
        diff = subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "diff",
                "--numstat",
                "--minimal",
                "--no-renames",
                "-z",
                "main~1",
                "main",
            ],
            check=True,
            capture_output=True,
            env=env,
        ).stdout
    result: dict[str, tuple[int, int] | None] = {}
    for entry in diff.split(b"\0"):
        if not entry:
            continue
        added, removed, path = entry.split(b"\t", 2)
        if added == b"-":
            result[path.decode()] = None
        else:
            result[path.decode()] = (int(added), int(removed))
    return [result.get(name, (0, 0)) for name in names]
