"""metre.ingest.mirror and metre.ingest.repourls against the git CLI: mirroring, incremental
fetch, URL policy, broken sources."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from dulwich.repo import Repo
from dulwich.server import BackendRepo, DictBackend
from dulwich.web import make_wsgi_chain

from metre.ingest.git.errors import RepositoryError
from metre.ingest.mirror import FetchAccess, open_mirror, resolve_head
from metre.ingest.repourls import validate_url
from metre.ingest.urlpolicy import InvalidRepositoryURL, UrlPolicy
from tests.fixtures.gitrepo import GitRepoBuilder, run_git

# Loopback test servers speak plain http: a policy that admits them.
LOOPBACK = UrlPolicy(frozenset({"http", "https"}), allow_private_hosts=True)


def _refs(repo: Path) -> dict[str, str]:
    out = run_git(
        repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags"
    )
    return dict(line.split() for line in out.decode().splitlines())


def _head_ref(repo: Path) -> str:
    return run_git(repo, "symbolic-ref", "HEAD").decode().strip()


def _in_pack(repo: Path) -> int:
    """Objects stored in packs, duplicates across packs included (what a fetch transferred)."""
    stats = dict(
        line.split(": ") for line in run_git(repo, "count-objects", "-v").decode().splitlines()
    )
    return int(stats["in-pack"]) + int(stats["count"])


@pytest.fixture
def source(tmp_path: Path) -> GitRepoBuilder:
    b = GitRepoBuilder(tmp_path / "source")
    b.write("a.txt", b"one\n")
    b.commit("first", date="2021-01-01T00:00:00+0000")
    b.branch("side")
    b.write("b/c.txt", b"two\n")
    b.commit("second", date="2021-01-02T00:00:00+0000")
    b.git("tag", "-a", "-m", "annotated", "v1")
    b.git("tag", "light", "HEAD~1")
    return b


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_mirror_equals_source(source: GitRepoBuilder, tmp_path: Path, form: str) -> None:
    url = str(source.path) if form == "path" else source.path.as_uri()
    mirror = open_mirror(tmp_path / "mirrors", 42, url)
    assert mirror == tmp_path / "mirrors" / "42.git"
    assert run_git(mirror, "rev-parse", "--is-bare-repository").strip() == b"true"
    assert _refs(mirror) == _refs(source.path)
    assert _head_ref(mirror) == "refs/heads/main"
    run_git(mirror, "fsck", "--strict", "--no-dangling")
    assert resolve_head(mirror, None) == source.head()
    assert (
        resolve_head(mirror, "side") == run_git(source.path, "rev-parse", "side").decode().strip()
    )
    assert resolve_head(mirror, "refs/heads/main") == source.head()


def test_incremental_fetch_transfers_only_new_objects(
    source: GitRepoBuilder, tmp_path: Path
) -> None:
    mirrors = tmp_path / "mirrors"
    mirror = open_mirror(mirrors, 1, str(source.path))
    before = _in_pack(mirror)
    assert open_mirror(mirrors, 1, str(source.path)) == mirror  # nothing new: nothing moves
    assert _in_pack(mirror) == before
    source.write("a.txt", b"one\nthree\n")
    new = source.commit("third", date="2021-01-03T00:00:00+0000")
    open_mirror(mirrors, 1, str(source.path))
    assert resolve_head(mirror, None) == new
    assert _in_pack(mirror) == before + 3  # the commit, its root tree, the blob
    assert _refs(mirror) == _refs(source.path)
    run_git(mirror, "fsck", "--strict", "--no-dangling")


def test_refs_follow_force_push_deletion_and_default_branch(
    source: GitRepoBuilder, tmp_path: Path
) -> None:
    mirrors = tmp_path / "mirrors"
    mirror = open_mirror(mirrors, 1, str(source.path))
    old_head = source.head()
    source.git("reset", "-q", "--hard", "HEAD~1")  # a force-push
    source.git("branch", "-D", "side")
    source.git("tag", "-d", "light")
    source.git("branch", "trunk")
    source.git("symbolic-ref", "HEAD", "refs/heads/trunk")
    open_mirror(mirrors, 1, str(source.path))
    assert _refs(mirror) == _refs(source.path)
    assert _head_ref(mirror) == "refs/heads/trunk"
    assert resolve_head(mirror, None) == source.head()
    # the rewritten commit stays readable in the mirror (retraction needs it)
    assert run_git(mirror, "cat-file", "-t", old_head).strip() == b"commit"


def test_resolve_head_errors(source: GitRepoBuilder, tmp_path: Path) -> None:
    mirror = open_mirror(tmp_path / "mirrors", 1, str(source.path))
    with pytest.raises(
        RepositoryError, match=r"branch 'nope' does not exist \(branches: main, side\)"
    ):
        resolve_head(mirror, "nope")
    empty = GitRepoBuilder(tmp_path / "empty")
    mirror2 = open_mirror(tmp_path / "mirrors", 2, str(empty.path))
    with pytest.raises(RepositoryError, match="empty"):
        resolve_head(mirror2, None)
    with pytest.raises(RepositoryError, match="empty"):
        resolve_head(mirror2, "main")


@pytest.mark.parametrize(
    ("url", "allow_local", "message"),
    [
        ("", True, "empty"),
        ("   ", True, "empty"),
        (" https://example.org/x.git", True, "spaces or control"),
        ("https://example.org/x\n.git", True, "spaces or control"),
        ("-uhack", True, "cannot start with '-'"),
        ("--upload-pack=touch /tmp/x", True, "cannot start with '-'"),
        ("ext::sh -c touch% /tmp/pwned", True, "transport helpers"),
        ("fd::17", True, "transport helpers"),
        ("https://user:secret@example.org/x.git", True, "credentials"),
        ("https://token@example.org/x.git", True, "credentials"),
        ("ssh://git@example.org/x.git", True, "unsupported URL scheme 'ssh'"),
        ("git://example.org/x.git", True, "unsupported URL scheme 'git'"),
        ("ftp://example.org/x.git", False, "unsupported URL scheme 'ftp'"),
        ("git@example.org:x/y.git", True, "unsupported URL scheme 'ssh'"),
        ("relative/path", True, "relative paths"),
        ("https:///x.git", True, "no valid host"),
        ("https://example.org:99999/x", True, "invalid port"),
        ("/srv/repo.git", False, "local paths are not accepted"),
        ("file:///srv/repo.git", False, "local paths are not accepted"),
        ("file://otherhost/srv/repo.git", True, "on this machine"),
        ("/definitely/not/here", True, "does not exist"),
    ],
)
def test_bad_urls_are_rejected(url: str, allow_local: bool, message: str) -> None:
    with pytest.raises(InvalidRepositoryURL, match=message) as info:
        validate_url(url, allow_local)
    assert "secret" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_good_urls_are_canonical(source: GitRepoBuilder, tmp_path: Path) -> None:
    assert validate_url("https://example.org/a/b.git", False) == "https://example.org/a/b.git"
    assert validate_url("http://127.0.0.1:8080/r", policy=LOOPBACK) == "http://127.0.0.1:8080/r"
    path = str(source.path)
    assert validate_url(path, True) == path
    assert validate_url(path + "/", True) == path
    assert validate_url(source.path.as_uri(), True) == path
    bare = tmp_path / "bare.git"
    run_git(tmp_path, "clone", "-q", "--bare", path, str(bare))
    assert validate_url(str(bare), True) == str(bare)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InvalidRepositoryURL, match="is not a git repository"):
        validate_url(str(plain), True)


def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "file.txt").write_text("x")
    with pytest.raises(RepositoryError, match="not a git repository"):
        open_mirror(tmp_path / "mirrors", 1, str(plain))
    with pytest.raises(RepositoryError, match="cannot fetch"):
        open_mirror(tmp_path / "mirrors", 2, str(tmp_path / "missing"))


def test_unreachable_http_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="cannot be reached") as info:
        open_mirror(
            tmp_path / "mirrors", 1, "http://127.0.0.1:9/nothing.git", FetchAccess(LOOPBACK)
        )
    assert "Traceback" not in str(info.value)


def test_deleted_loose_object_is_a_repository_error(source: GitRepoBuilder, tmp_path: Path) -> None:
    blob = run_git(source.path, "rev-parse", "HEAD:b/c.txt").decode().strip()
    (source.path / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    with pytest.raises(RepositoryError, match="corrupt or unreadable") as info:
        open_mirror(tmp_path / "mirrors", 1, str(source.path))
    assert "Traceback" not in str(info.value)


def test_truncated_pack_is_a_repository_error(source: GitRepoBuilder, tmp_path: Path) -> None:
    source.git("repack", "-a", "-d", "-q")
    (pack,) = (source.path / ".git" / "objects" / "pack").glob("*.pack")
    data = pack.read_bytes()
    pack.chmod(0o644)
    pack.write_bytes(data[: len(data) // 2])
    with pytest.raises(RepositoryError, match="cannot fetch"):
        open_mirror(tmp_path / "mirrors", 1, str(source.path))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url(source: GitRepoBuilder) -> Iterator[str]:
    """The source served by dulwich's smart-HTTP WSGI app on loopback."""
    repo = Repo(str(source.path))
    repos: dict[str, BackendRepo] = {"/": repo}
    app = make_wsgi_chain(DictBackend(repos))
    server = make_server("127.0.0.1", 0, app, WSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        repo.close()


def test_http_mirror(http_url: str, source: GitRepoBuilder, tmp_path: Path) -> None:
    assert validate_url(http_url, policy=LOOPBACK) == http_url
    mirror = open_mirror(tmp_path / "mirrors", 5, http_url, FetchAccess(LOOPBACK))
    assert _refs(mirror) == _refs(source.path)
    assert resolve_head(mirror, None) == source.head()
    source.write("new.txt", b"over http\n")
    new = source.commit("over http", date="2021-01-05T00:00:00+0000")
    open_mirror(tmp_path / "mirrors", 5, http_url, FetchAccess(LOOPBACK))
    assert resolve_head(mirror, None) == new
    run_git(mirror, "fsck", "--strict", "--no-dangling")


def test_first_local_clone_copies_the_packs(source: GitRepoBuilder, tmp_path: Path) -> None:
    """A first fetch from a path copies the source's packs as they are (`git clone --local`)
    and packs its loose objects; the mirror is complete (git fsck) and later fetches add to it."""
    source.git("repack", "-a", "-d", "-q")
    source.write("loose.txt", b"after the repack\n")
    source.commit("loose", date="2021-01-03T00:00:00+0000")  # objects left loose
    packs = {p.name for p in (source.path / ".git" / "objects" / "pack").glob("*.pack")}
    mirror = open_mirror(tmp_path / "mirrors", 1, str(source.path))
    copied = {p.name for p in (mirror / "objects" / "pack").glob("*.pack")}
    assert packs < copied  # the source's packs, byte for byte under their names, and one more
    for name in packs:
        assert (mirror / "objects" / "pack" / name).read_bytes() == (
            source.path / ".git" / "objects" / "pack" / name
        ).read_bytes()
    assert not [d for d in (mirror / "objects").iterdir() if len(d.name) == 2]  # none loose
    assert _refs(mirror) == _refs(source.path)
    run_git(mirror, "fsck", "--strict", "--no-dangling")
    source.write("later.txt", b"an incremental fetch\n")
    source.commit("later", date="2021-01-04T00:00:00+0000")
    open_mirror(tmp_path / "mirrors", 1, str(source.path))
    assert _refs(mirror) == _refs(source.path)
    run_git(mirror, "fsck", "--strict", "--no-dangling")


def test_a_failed_first_copy_leaves_the_mirror_empty(
    source: GitRepoBuilder, tmp_path: Path
) -> None:
    source.git("repack", "-a", "-d", "-q")
    (pack,) = (source.path / ".git" / "objects" / "pack").glob("*.pack")
    data = pack.read_bytes()
    pack.chmod(0o644)
    pack.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # only the checksum differs
    with pytest.raises(RepositoryError, match="corrupt or unreadable"):
        open_mirror(tmp_path / "mirrors", 1, str(source.path))
    assert list((tmp_path / "mirrors" / "1.git" / "objects" / "pack").iterdir()) == []
    pack.write_bytes(data)  # repaired: the next poll copies it afresh
    mirror = open_mirror(tmp_path / "mirrors", 1, str(source.path))
    assert _refs(mirror) == _refs(source.path)
