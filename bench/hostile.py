"""The big hostile case too slow for the suite: a 500 MB blob.

Run: python -P bench/hostile.py [MB]   (default 500; -P keeps bench/kernels.py from shadowing
the kernels package). Prints seconds and peak RSS; the blob is streamed into
`git fast-import`, never held whole by this script. tests/ingest/test_hostile.py keeps a
50 MB blob and the 100,000-file commit in the suite.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dulwich.repo import Repo

from metre.ingest.commits import commit_event
from metre.ingest.mirror import open_mirror, resolve_head

LINE = b"0123456789abcdef" * 4 + b"\n"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(path: Path, megabytes: int) -> int:
    lines = megabytes * 1024 * 1024 // len(LINE)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path.parent)}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    proc = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=path, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(b"blob\nmark :1\ndata %d\n" % (lines * len(LINE)))
    chunk = LINE * 16384
    left = lines
    while left:
        n = min(left, 16384)
        proc.stdin.write(chunk if n == 16384 else LINE * n)
        left -= n
    proc.stdin.write(b"\ncommit refs/heads/main\ncommitter A <a@x> 1600000000 +0000\n")
    proc.stdin.write(b"data 4\nbig\nM 100644 :1 big.txt\n\n")
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")
    return lines


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "fat"
        lines = build(src, megabytes)
        started = time.perf_counter()
        mirror = open_mirror(Path(tmp) / "m", 1, str(src))
        fetched = time.perf_counter() - started
        with Repo(str(mirror)) as repo:
            event = commit_event(repo, 1, resolve_head(mirror, None))
        total = time.perf_counter() - started
        (change,) = event.files
        ok = (change.added, change.removed) == (lines, 0)
        print(
            f"{megabytes} MB blob: fetch {fetched:.1f} s, fetch+event {total:.1f} s, "
            f"peak RSS {_peak_mb():.0f} MB, lines {change.added} ({'ok' if ok else 'WRONG'})"
        )


if __name__ == "__main__":
    main()
