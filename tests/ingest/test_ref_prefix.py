"""A fetch asks the remote for branches, tags and HEAD only (protocol v2 ``ref-prefix``), so a
forge's pull-request refs are neither sent nor parsed; checked where they would be sent (the
packet trace of `git daemon`'s and `git http-backend`'s upload-pack), and the mirror still
follows every change of the refs it keeps: a tag added, moved and deleted, a branch
force-pushed and one deleted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from metre.ingest.mirror import FetchAccess, open_mirror, resolve_head
from metre.ingest.urlpolicy import UrlPolicy
from testkit.gitservers import git_daemon, smart_http
from tests.fixtures.gitrepo import git_env, run_git

PULLS = 40


def _source(path: Path) -> Path:
    """A bare repository: 30 commits on main, a side branch, a lightweight and an annotated
    tag, `PULLS` pull-request refs (``refs/pull/N/head``) and a notes ref."""
    path.parent.mkdir(parents=True)
    run_git(path.parent, "init", "-q", "--bare", "-b", "main", str(path))
    out = []
    for i in range(1, 31):
        out.append(b"commit refs/heads/main\nmark :%d\n" % i)
        out.append(b"committer C <c@example.org> %d +0000\ndata 3\nc%02d" % (1_500_000_000 + i, i))
        if i > 1:
            out.append(b"from :%d\n" % (i - 1))
        out.append(b"M 100644 inline f.txt\ndata 3\n%02d\n" % i)
    run_git(path, "fast-import", "--quiet", stdin=b"".join(out), env=git_env(path.parent))
    run_git(path, "branch", "side", "main~5")
    run_git(path, "tag", "light", "main~10")
    run_git(path, "tag", "-a", "-m", "v1", "v1", "main~3", env=git_env(path.parent))
    for n in range(PULLS):
        run_git(path, "update-ref", f"refs/pull/{n}/head", f"main~{n % 20}")
    run_git(path, "update-ref", "refs/notes/commits", "main~1")
    return path


def _kept(repo: Path) -> bytes:
    """The branches and tags of `repo`, as git lists them."""
    return run_git(
        repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/", "refs/tags/"
    )


def _sent(trace: Path, since: int) -> list[str]:
    """The packets upload-pack wrote (GIT_TRACE_PACKET) after byte `since` of the trace."""
    text = trace.read_bytes()[since:].decode(errors="replace")
    return [line for line in text.splitlines() if "upload-pack> " in line]


def _asked(trace: Path, since: int) -> list[str]:
    """The ref-prefix arguments upload-pack read after byte `since`."""
    text = trace.read_bytes()[since:].decode(errors="replace")
    return [line.split("< ", 1)[1] for line in text.splitlines() if "< ref-prefix " in line]


@contextmanager
def _git_daemon(source: Path, trace: Path, home: Path) -> Iterator[str]:
    with git_daemon(source.parent, git_env(home), trace) as port:
        yield f"git://127.0.0.1:{port}/{source.name}"


@contextmanager
def _smart_http(source: Path, trace: Path, home: Path) -> Iterator[str]:
    del home
    with smart_http(source.parent, trace) as port:
        yield f"http://127.0.0.1:{port}/{source.name}"


@pytest.mark.parametrize("serve", [_git_daemon, _smart_http], ids=["git", "http"])
def test_only_branches_tags_and_head_are_listed_and_all_their_changes_followed(
    serve: object, tmp_path: Path
) -> None:
    source = _source(tmp_path / "srv" / "r.git")
    trace = tmp_path / "trace"
    trace.touch()
    scheme = "git" if serve is _git_daemon else "http"
    access = FetchAccess(UrlPolicy(frozenset({scheme}), allow_private_hosts=True))
    with serve(source, trace, tmp_path / "home") as url:  # type: ignore[operator]
        mirror = open_mirror(tmp_path / "m", 1, url, access)
        assert _kept(mirror) == _kept(source)
        assert resolve_head(mirror, None) == run_git(source, "rev-parse", "main").decode().strip()
        sent = _sent(trace, 0)
        assert any(" refs/heads/main" in line for line in sent)  # the trace is the listing
        assert not [line for line in sent if "refs/pull/" in line or "refs/notes/" in line]
        assert sorted(set(_asked(trace, 0))) == [
            "ref-prefix HEAD",
            "ref-prefix refs/heads/",
            "ref-prefix refs/tags/",
        ]

        # every change to what the mirror keeps is still seen
        env = git_env(tmp_path / "home")
        run_git(source, "tag", "-f", "light", "main~2")
        run_git(source, "tag", "-d", "v1")
        run_git(source, "tag", "-a", "-m", "v2", "v2", "main", env=env)
        run_git(source, "update-ref", "refs/heads/main", "main~4")  # a force-push backwards
        run_git(source, "branch", "-D", "side")
        run_git(source, "update-ref", "refs/pull/99/head", "main")
        mark = trace.stat().st_size
        open_mirror(tmp_path / "m", 1, url, access)
        assert _kept(mirror) == _kept(source)
        assert resolve_head(mirror, None) == run_git(source, "rev-parse", "main").decode().strip()
        assert not [line for line in _sent(trace, mark) if "refs/pull/" in line]
        run_git(mirror, "fsck", "--no-dangling")
