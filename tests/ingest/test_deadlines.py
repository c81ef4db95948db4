"""Fetch deadlines and concurrent polls against real slow servers on loopback.

- a git:// black hole: accepts connections, reads the request, never answers;
- an http trickle: answers the ref advertisement's headers at once, then one byte of body
  every `TRICKLE` seconds forever (it never trips an idle timeout, only the total one);
- a full accept queue: a listening socket that never accepts, so a new connection's SYN is
  dropped and the connect hangs (the connect deadline).

The poller tests run over the real PostgreSQL registry: a normal repository must be polled
while the slow ones are still held, and with one poll slot the deadlines free it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from metre.contracts.bus import InMemoryBus
from metre.ingest.deadlines import FetchClock, FetchDeadlines
from metre.ingest.git.errors import RepositoryError
from metre.ingest.localfetch import CHECK_EVERY
from metre.ingest.mirror import FetchAccess, open_mirror
from metre.ingest.poller import Poller, PollerConfig
from metre.ingest.urlpolicy import UrlPolicy
from metre.processors.store import PgStore
from tests.fixtures.gitrepo import GitRepoBuilder, run_git

LOOPBACK = UrlPolicy(
    frozenset({"http", "https", "git", "ssh"}), allow_private_hosts=True, allow_local_paths=True
)
TRICKLE = 0.2
"""Seconds between two bytes of the trickling server."""


@dataclass
class SlowServer:
    port: int
    connections: int = 0
    threads: list[threading.Thread] = field(default_factory=list)


def _serve(handle: str, tls: ssl.SSLContext | None = None) -> Iterator[SlowServer]:
    """A loopback server whose connections get `handle` ("black hole" or "trickle"), over
    TLS with `tls`."""
    listener = socket.create_server(("127.0.0.1", 0))
    state = SlowServer(listener.getsockname()[1])
    stop = threading.Event()

    def client(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if tls is not None:
                conn.settimeout(5)
                conn = tls.wrap_socket(conn, server_side=True)
        with conn, contextlib.suppress(OSError):
            conn.settimeout(TRICKLE)
            request = b""
            while b"\r\n\r\n" not in request and b"\n" not in request[:4] and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
            if handle == "trickle":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\n"
                    b"Content-Type: application/x-git-upload-pack-advertisement\r\n"
                    b"Connection: close\r\n\r\n"
                    b"001e# service=git-upload-pack\n0000fff0"
                )
                while not stop.wait(TRICKLE):
                    conn.sendall(b"a")
            else:
                stop.wait()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            state.connections += 1
            serving = threading.Thread(target=client, args=(conn,), daemon=True)
            serving.start()
            state.threads.append(serving)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join()
        listener.close()
        for serving in state.threads:
            serving.join()


@pytest.fixture
def black_hole() -> Iterator[SlowServer]:
    yield from _serve("black hole")


@pytest.fixture
def trickle() -> Iterator[SlowServer]:
    yield from _serve("trickle")


@pytest.fixture
def tls_trickle(tmp_path: Path) -> Iterator[tuple[SlowServer, Path]]:
    """The trickle over TLS, with a certificate for 127.0.0.1 (returned, to trust)."""
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.skip("no openssl")
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    for server in _serve("trickle", ctx):
        yield server, cert


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: connects to it hang (SYNs dropped), never refused."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


@pytest.fixture
def normal(tmp_path: Path) -> GitRepoBuilder:
    b = GitRepoBuilder(tmp_path / "normal")
    for i in range(3):
        b.write("a.txt", f"{i}\n".encode())
        b.commit(f"c{i}", date=f"2021-01-0{i + 1}T00:00:00+0000")
    return b


def _access(connect: float = 30.0, idle: float = 30.0, total: float = 60.0) -> FetchAccess:
    return FetchAccess(LOOPBACK, deadlines=FetchDeadlines(connect, idle, total))


# ------------------------------------------------------------------------- one fetch at a time


def test_git_black_hole_fails_at_the_idle_deadline(black_hole: SlowServer, tmp_path: Path) -> None:
    url = f"git://127.0.0.1:{black_hole.port}/r"
    with pytest.raises(RepositoryError, match=r"sent nothing for 0\.5 s \(METRE_FETCH_IDLE"):
        open_mirror(tmp_path / "m", 1, url, _access(idle=0.5))
    assert black_hole.connections == 1


def test_git_black_hole_fails_at_the_total_deadline(black_hole: SlowServer, tmp_path: Path) -> None:
    url = f"git://127.0.0.1:{black_hole.port}/r"
    with pytest.raises(RepositoryError, match=r"did not finish within 1 s \(METRE_FETCH_TIMEOUT"):
        open_mirror(tmp_path / "m", 1, url, _access(total=1))


def test_http_trickle_fails_at_the_total_deadline(trickle: SlowServer, tmp_path: Path) -> None:
    """A byte every TRICKLE seconds never trips the idle deadline; the total one ends it."""
    url = f"http://127.0.0.1:{trickle.port}/r"
    with pytest.raises(RepositoryError, match=r"did not finish within 1 s \(METRE_FETCH_TIMEOUT"):
        open_mirror(tmp_path / "m", 1, url, _access(idle=150 * TRICKLE, total=1))


def test_https_trickle_fails_at_the_total_deadline(
    tls_trickle: tuple[SlowServer, Path], tmp_path: Path
) -> None:
    """The socket under TLS is shut down at the deadline: the blocked TLS read returns."""
    server, cert = tls_trickle
    url = f"https://127.0.0.1:{server.port}/r"
    access = FetchAccess(
        LOOPBACK, ca_file=cert, deadlines=FetchDeadlines(connect=30, idle=30, total=1)
    )
    with pytest.raises(RepositoryError, match=r"did not finish within 1 s \(METRE_FETCH_TIMEOUT"):
        open_mirror(tmp_path / "m", 1, url, access)
    assert server.connections == 1


def test_http_black_hole_fails_at_the_idle_deadline(black_hole: SlowServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{black_hole.port}/r"
    with pytest.raises(RepositoryError, match=r"sent nothing for 0\.5 s \(METRE_FETCH_IDLE"):
        open_mirror(tmp_path / "m", 1, url, _access(idle=0.5))


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_connect_deadline(full_backlog: int, tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{full_backlog}/r"
    with pytest.raises(RepositoryError, match=r"no connection within 0\.5 s"):
        open_mirror(tmp_path / "m", 1, url, _access(connect=0.5))


def test_ssh_black_hole_fails_at_the_total_deadline(black_hole: SlowServer, tmp_path: Path) -> None:
    """ssh waits for the server's banner; the total deadline kills it."""
    url = f"ssh://git@127.0.0.1:{black_hole.port}/r"
    with pytest.raises(RepositoryError, match=r"METRE_FETCH_TIMEOUT"):
        open_mirror(tmp_path / "m", 1, url, _access(total=1))


def test_ssh_black_hole_fails_at_the_connect_deadline(
    black_hole: SlowServer, tmp_path: Path
) -> None:
    url = f"ssh://git@127.0.0.1:{black_hole.port}/r"
    with pytest.raises(RepositoryError, match=r"no connection within 1 s"):
        open_mirror(tmp_path / "m", 1, url, _access(connect=1))


# --------------------------------------------------------------------------------- the poller


async def _register(store: PgStore, urls: list[str]) -> list[int]:
    return [(await store.add_repo(url, None)).id for url in urls]


async def _wait_for(store: PgStore, repo_id: int, states: set[str], timeout: float) -> str:
    """The repository's state once it is one of `states` (fails after `timeout` seconds: on
    today's code, a poller held by a slow remote never gets there)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        row = await store.get_repo(repo_id)
        assert row is not None
        if row.state in states:
            return row.state
        assert loop.time() < end, f"repository {repo_id} still {row.state}: {row.error}"
        await asyncio.sleep(0.05)


async def test_slow_remotes_do_not_hold_the_poller(
    store: PgStore, black_hole: SlowServer, trickle: SlowServer, normal: GitRepoBuilder,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The slow remotes are claimed first and hold their polls (deadlines far away); the
    normal repository is polled meanwhile, by the same poller."""
    ids = await _register(
        store,
        [
            f"git://127.0.0.1:{black_hole.port}/r",
            f"http://127.0.0.1:{trickle.port}/r",
            str(normal.path),
        ],
    )
    bus = InMemoryBus()
    await bus.start()
    await bus.ensure_topics(["commits"])
    config = PollerConfig(
        mirrors_dir=tmp_path / "m",
        topic="commits",
        access=_access(idle=600, total=600),
        concurrency=3,
        lease_seconds=3.0,
    )
    poller = Poller(bus, store, config)
    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))
    try:
        assert await _wait_for(store, ids[2], {"idle", "failed"}, 120) == "idle"
        for slow in ids[:2]:
            row = await store.get_repo(slow)
            assert row is not None
            assert row.state == "polling", (row.state, row.error)
        assert black_hole.connections >= 1
        assert trickle.connections >= 1
        # Leases are renewed while the fetches are under way: past the first lease nobody
        # else may claim them.
        query = "SELECT lease_until FROM repos WHERE id = $1"
        first = {i: await store._pool.fetchval(query, i) for i in ids[:2]}
        give_up = asyncio.get_running_loop().time() + 60
        for i in ids[:2]:
            while (await store._pool.fetchval(query, i)) <= first[i]:
                assert asyncio.get_running_loop().time() < give_up, "lease never renewed"
                await asyncio.sleep(0.1)
        assert await store.claim_due_repo(60.0) is None
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await bus.stop()
    # Stopped: the held polls were abandoned, their leases given back at once.
    for slow in ids[:2]:
        row = await store.get_repo(slow)
        assert row is not None
        assert row.state != "polling"


async def test_deadlines_free_a_single_poll_slot(
    store: PgStore, black_hole: SlowServer, trickle: SlowServer, normal: GitRepoBuilder,
    tmp_path: Path,
) -> None:  # fmt: skip
    """One slot only: each slow remote holds it until its deadline, fails with the deadline
    named, and the normal repository is polled after them."""
    ids = await _register(
        store,
        [
            f"git://127.0.0.1:{black_hole.port}/r",
            f"http://127.0.0.1:{trickle.port}/r",
            str(normal.path),
        ],
    )
    bus = InMemoryBus()
    await bus.start()
    await bus.ensure_topics(["commits"])
    config = PollerConfig(
        mirrors_dir=tmp_path / "m",
        topic="commits",
        access=_access(idle=1.5, total=3.0),
        concurrency=1,
        retry_base=600.0,
    )
    poller = Poller(bus, store, config)
    stop = asyncio.Event()
    running = asyncio.create_task(poller.run(stop))
    try:
        assert await _wait_for(store, ids[2], {"idle", "failed"}, 120) == "idle"
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        await bus.stop()
    hole, slow = await store.get_repo(ids[0]), await store.get_repo(ids[1])
    assert hole is not None
    assert slow is not None
    # (which of the idle or total deadline trips first for each is the single-fetch tests'
    # business: under load the trickle may pause longer than the idle deadline)
    for row in (hole, slow):
        assert row.state == "failed"
        assert re.search(r"METRE_FETCH_(IDLE_)?TIMEOUT", str(row.error)), row.error
    done = await store.get_repo(ids[2])
    assert done is not None
    assert done.head == normal.head()


# ------------------------------------------------------------ name resolution and local paths


def test_a_resolver_that_never_answers_fails_at_the_connect_deadline(tmp_path: Path) -> None:
    """getaddrinfo cannot be interrupted: the fetch stops waiting for it at the connect
    deadline and names that deadline (the resolver thread is released afterwards)."""
    asked = threading.Event()
    release = threading.Event()

    def hang(host: str, port: int) -> list[str]:
        asked.set()
        release.wait(30)
        return ["127.0.0.1"]

    access = FetchAccess(LOOPBACK, resolve=hang, deadlines=FetchDeadlines(0.5, 30, 60))
    try:
        with pytest.raises(
            RepositoryError,
            match=r"host 'slow\.example' did not resolve within 0\.5 s "
            r"\(METRE_FETCH_CONNECT_TIMEOUT\)",
        ):
            open_mirror(tmp_path / "m", 1, "git://slow.example/r", access)
    finally:
        release.set()
    assert asked.is_set()
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").rglob("*.pack"))


def test_a_resolver_that_fails_still_says_the_host_does_not_resolve(tmp_path: Path) -> None:
    def fail(host: str, port: int) -> list[str]:
        raise OSError(f"{host}: no such name")

    access = FetchAccess(LOOPBACK, resolve=fail, deadlines=FetchDeadlines(5, 30, 60))
    with pytest.raises(RepositoryError, match=r"host 'nowhere\.example' does not resolve"):
        open_mirror(tmp_path / "m", 1, "git://nowhere.example/r", access)


def _many_objects(b: GitRepoBuilder, n: int, tag: str) -> None:
    for i in range(n):
        b.write(f"{tag}/f{i:05d}.txt", f"{tag} {i}\n".encode())
    b.commit(f"{n} files ({tag})", date="2021-02-01T00:00:00+0000")


def test_a_local_first_fetch_stops_at_the_total_deadline(
    normal: GitRepoBuilder, tmp_path: Path
) -> None:
    """A clock whose deadline has passed stops the first local fetch before its first pack;
    the mirror is left empty for the next poll to start afresh."""
    normal.git("gc", "-q")
    clock = FetchClock(FetchDeadlines(total=60)).start()
    clock.abort()
    with pytest.raises(RepositoryError, match=r"did not finish within 60 s \(METRE_FETCH_TIMEOUT"):
        open_mirror(tmp_path / "m", 1, str(normal.path), _access(), clock=clock)
    assert not list((tmp_path / "m").rglob("*.pack"))
    assert open_mirror(tmp_path / "m", 1, str(normal.path), _access()).is_dir()


def test_a_local_fetch_of_many_objects_stops_at_the_total_deadline(
    normal: GitRepoBuilder, tmp_path: Path
) -> None:
    """The walk that copies new objects looks at the clock as it goes: past the deadline the
    fetch fails, nothing is landed and the mirror's refs stay where they were."""
    mirror = open_mirror(tmp_path / "m", 1, str(normal.path), _access())
    before = run_git(mirror, "for-each-ref")
    packs = sorted(p.name for p in (mirror / "objects" / "pack").glob("*.pack"))
    _many_objects(normal, 2 * CHECK_EVERY, "bulk")
    clock = FetchClock(FetchDeadlines(total=60)).start()
    clock.abort()
    with pytest.raises(RepositoryError, match=r"did not finish within 60 s \(METRE_FETCH_TIMEOUT"):
        open_mirror(tmp_path / "m", 1, str(normal.path), _access(), clock=clock)
    assert run_git(mirror, "for-each-ref") == before
    assert sorted(p.name for p in (mirror / "objects" / "pack").glob("*.pack")) == packs
    open_mirror(tmp_path / "m", 1, str(normal.path), _access())
    assert run_git(mirror, "rev-parse", "main") == run_git(normal.path, "rev-parse", "main")
