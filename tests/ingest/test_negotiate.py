"""Negotiation stops at the common commits: one new commit on a long history costs a handful of
haves over git://, smart HTTP and ssh, counted where they arrive (the server's packet trace
for `git daemon` and `git http-backend`; the walker's own count for ssh), and the mirror ends
equal to the source (git fsck, refs).

The old walker offered the whole history (3,000 haves here, 82,000 on a real one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import metre.ingest.remotefetch
from metre.ingest.mirror import FetchAccess, open_mirror, resolve_head
from metre.ingest.negotiate import HaveWalker
from metre.ingest.urlpolicy import UrlPolicy
from testkit.gitservers import git_daemon, smart_http
from tests.fixtures.gitrepo import git_env, run_git
from tests.fixtures.sshd import SSH_ALIAS, SshClient, SshServers
from tests.ingest.test_transports import Resolver

COMMITS = 3000
BOUND = 24
"""Haves for one new commit: the old tip, the other branch tips, a few skipping ancestors."""


def _history(path: Path) -> Path:
    """A bare repository: `COMMITS` commits on main, one in ten a merge of a side branch."""
    run_git(path.parent, "init", "-q", "--bare", "-b", "main", str(path))
    out = []
    ts = 1_500_000_000
    tips = {b"main": 0, b"side": 0}
    for i in range(1, COMMITS + 1):
        ts += 60
        branch = b"side" if i % 10 in (3, 4, 5) else b"main"
        out.append(b"commit refs/heads/%s\nmark :%d\n" % (branch, i))
        out.append(b"committer C <c@example.org> %d +0000\ndata 3\nc%d\n" % (ts, i % 10))
        if i % 10 == 3 and tips[b"main"]:
            out.append(b"from :%d\n" % tips[b"main"])
        elif tips[branch]:
            out.append(b"from :%d\n" % tips[branch])
        if i % 10 == 6 and tips[b"side"]:
            out.append(b"merge :%d\n" % tips[b"side"])
        tips[branch] = i
        body = b"%d\n" % i
        out.append(b"M 100644 inline f%d.txt\ndata %d\n%s\n" % (i % 50, len(body), body))
    run_git(path, "fast-import", "--quiet", stdin=b"".join(out), env=git_env(path.parent))
    run_git(path, "tag", "v1", "main~100")
    return path


def _push_one(source: Path, n: int) -> str:
    """One new commit on main, written into the bare source."""
    head = run_git(source, "rev-parse", "main").decode().strip()
    tree = run_git(source, "rev-parse", "main^{tree}").decode().strip()
    blob = run_git(source, "hash-object", "-w", "--stdin", stdin=b"new %d\n" % n)
    listing = run_git(source, "ls-tree", tree) + b"100644 blob %s\tnew%d.txt\n" % (blob.strip(), n)
    new_tree = run_git(source, "mktree", stdin=listing).decode().strip()
    env = git_env(source.parent)
    commit = run_git(source, "commit-tree", new_tree, "-p", head, "-m", f"new {n}", env=env)
    sha = commit.decode().strip()
    run_git(source, "update-ref", "refs/heads/main", sha)
    return sha


def _haves(trace: Path) -> int:
    """`have` lines upload-pack read, from GIT_TRACE_PACKET."""
    if not trace.exists():
        return 0
    return sum(1 for line in trace.read_text(errors="replace").splitlines() if "< have " in line)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _history(tmp_path_factory.mktemp("negotiate") / "base.git")


@pytest.fixture
def source(history: Path, tmp_path: Path) -> Path:
    path = tmp_path / "srv" / "r.git"
    path.parent.mkdir()
    run_git(tmp_path, "clone", "-q", "--bare", str(history), str(path))
    return path


def _check(mirror: Path, source: Path, head: str) -> None:
    assert resolve_head(mirror, None) == head
    theirs = run_git(source, "for-each-ref", "--format=%(refname) %(objectname)")
    assert run_git(mirror, "for-each-ref", "--format=%(refname) %(objectname)") == theirs
    run_git(mirror, "fsck", "--no-dangling")


def test_git_daemon_sees_a_handful_of_haves(source: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    with git_daemon(source.parent, git_env(tmp_path), trace) as port:
        access = FetchAccess(UrlPolicy(frozenset({"git"}), allow_private_hosts=True))
        url = f"git://127.0.0.1:{port}/r.git"
        mirror = open_mirror(tmp_path / "m", 1, url, access)
        before = _haves(trace)
        assert before == 0  # a first fetch has nothing to offer
        for n in range(3):
            head = _push_one(source, n)
            open_mirror(tmp_path / "m", 1, url, access)
            _check(mirror, source, head)
            sent = _haves(trace) - before
            assert 1 <= sent <= BOUND, sent
            before += sent


def test_smart_http_sees_a_handful_of_haves(source: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    with smart_http(source.parent, trace) as port:
        access = FetchAccess(UrlPolicy(frozenset({"http"}), allow_private_hosts=True))
        url = f"http://127.0.0.1:{port}/r.git"
        mirror = open_mirror(tmp_path / "m", 1, url, access)
        before = _haves(trace)
        for n in range(2):
            head = _push_one(source, n)
            open_mirror(tmp_path / "m", 1, url, access)
            _check(mirror, source, head)
            sent = _haves(trace) - before
            assert 1 <= sent <= BOUND, sent
            before += sent


def test_ssh_walker_sends_a_handful_of_haves(
    source: Path,
    sshd: SshServers,
    ssh_client: SshClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walkers: list[HaveWalker] = []

    class Counted(HaveWalker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            walkers.append(self)

    monkeypatch.setattr(metre.ingest.remotefetch, "HaveWalker", Counted)
    access = FetchAccess(
        UrlPolicy(frozenset({"ssh"}), allow_private_hosts=True), resolve=Resolver(["127.0.0.1"])
    )
    url = f"ssh://{sshd.user}@{SSH_ALIAS}:{sshd.port}{source}"
    mirror = open_mirror(tmp_path / "m", 1, url, access)
    head = _push_one(source, 0)
    open_mirror(tmp_path / "m", 1, url, access)
    _check(mirror, source, head)
    assert walkers[0].sent == 0
    assert 1 <= walkers[-1].sent <= BOUND, walkers[-1].sent
    assert os.path.isdir(mirror)


def test_a_remote_commit_dulwich_cannot_parse_is_fetched(tmp_path: Path) -> None:
    """Received packs are indexed without parsing: a date git accepts and dulwich refuses
    (``12x34``) no longer fails a remote fetch."""
    from tests.fixtures.gitrepo import GitRepoBuilder

    b = GitRepoBuilder(tmp_path / "work")
    b.write("a.txt", b"one\n")
    b.commit("first", date="2021-01-01T00:00:00+0000")
    who = b"Garbage <g@example.com> 12x34 +0000"
    head = b.raw_commit(who, who, b"garbage date\n")
    served = tmp_path / "srv" / "r.git"
    served.parent.mkdir()
    run_git(tmp_path, "clone", "-q", "--bare", str(b.path), str(served))
    with smart_http(served.parent, tmp_path / "t") as port:
        access = FetchAccess(UrlPolicy(frozenset({"http"}), allow_private_hosts=True))
        url = f"http://127.0.0.1:{port}/r.git"
        mirror = open_mirror(tmp_path / "m", 1, url, access)
        assert resolve_head(mirror, None) == head
        run_git(mirror, "cat-file", "-e", head)
