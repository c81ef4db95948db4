"""Transports end to end: git:// against a real `git daemon`, https with real TLS (a
certificate made here by the openssl CLI, dulwich's smart-HTTP server behind Python's ssl).

Only loopback addresses are ever targets: 127.0.0.1 is the good server, 127.0.0.2 (also
loopback on Linux) the one a second resolution would lead to. Names end in ``.test``: they
exist in no DNS, so a fetch can only work through the address metre checked.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from dulwich.repo import Repo
from dulwich.server import BackendRepo, DictBackend
from dulwich.web import make_wsgi_chain

from metre.ingest.git.errors import RepositoryError
from metre.ingest.mirror import FetchAccess, open_mirror, resolve_head
from metre.ingest.urlpolicy import UrlPolicy
from metre.settings import Settings
from metre.wiring import fetch_access
from tests.fixtures.counting import Counting
from tests.fixtures.gitrepo import GitRepoBuilder

GIT_PRIVATE = UrlPolicy(frozenset({"git"}), allow_private_hosts=True)
GIT_DEFAULT = UrlPolicy(frozenset({"git"}))
HTTPS_PRIVATE = UrlPolicy(frozenset({"https"}), allow_private_hosts=True)
NAME = "git.metre.test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _repo(path: Path, text: str) -> GitRepoBuilder:
    b = GitRepoBuilder(path)
    b.write("a.txt", text.encode() + b"\n")
    b.commit(text, date="2021-01-01T00:00:00+0000")
    return b


class Daemon:
    """`git daemon` serving `base` on `host:port`; `log()` is its --verbose stderr so far."""

    def __init__(self, base: Path, host: str, port: int, log: Path) -> None:
        self.front: Counting | None = None
        """A counter the daemon is reached through, when it has one."""
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", "--verbose", "--informative-errors",
             f"--listen={host}", f"--port={port}", f"--base-path={base}", str(base)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((host, port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.05)

        # the readiness probe above is a connection too: log() reports only what follows it
        self.mark = 0
        while "Disconnected" not in self.log() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.mark = len(self.log_path.read_bytes())

    def log(self) -> str:
        """The daemon's log since it was ready."""
        return self.log_path.read_bytes()[self.mark :].decode(errors="replace")

    def stop(self) -> None:
        if self.front is not None:
            self.front.close()
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[tuple[int, GitRepoBuilder, Daemon, Daemon]]:
    """(port, good repository, daemon on 127.0.0.1, evil daemon on 127.0.0.2), same port: the
    evil one is reached through a counter of the connections it accepted (`evil.front`)."""
    if shutil.which("git") is None:  # pragma: no cover - git is the oracle everywhere
        pytest.skip("no git")
    port = _free_port()
    good = _repo(tmp_path / "good" / "r.git", "good")
    evil = _repo(tmp_path / "evil" / "r.git", "evil")
    one = Daemon(tmp_path / "good", "127.0.0.1", port, tmp_path / "good.log")
    try:
        behind = _free_port()
        two = Daemon(tmp_path / "evil", "127.0.0.2", behind, tmp_path / "evil.log")
        two.front = Counting("127.0.0.2", port, target=("127.0.0.2", behind))
    except Exception:
        one.stop()
        raise
    try:
        yield port, good, one, two
    finally:
        one.stop()
        two.stop()
    del evil


class Resolver:
    """Answers `answers[i]` to the i-th lookup (the last one ever after) and counts them."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


def test_git_daemon_fetch_and_update(
    daemons: tuple[int, GitRepoBuilder, Daemon, Daemon], tmp_path: Path
) -> None:
    port, good, daemon, _ = daemons
    resolve = Resolver(["127.0.0.1"])
    access = FetchAccess(GIT_PRIVATE, resolve=resolve)
    url = f"git://{NAME}:{port}/r.git"
    mirror = open_mirror(tmp_path / "m", 1, url, access)
    assert resolve_head(mirror, None) == good.head()
    good.write("b.txt", b"two\n")
    second = good.commit("second", date="2021-01-02T00:00:00+0000")
    mirror = open_mirror(tmp_path / "m", 1, url, access)  # incremental: the mirror has the rest
    assert resolve_head(mirror, None) == second
    assert "Connection from 127.0.0.1" in daemon.log()


def test_git_daemon_refused_address_is_never_contacted(tmp_path: Path) -> None:
    """Both addresses listen, counting what they accept: the refusals come before any
    connection."""
    port = _free_port()
    listeners = [Counting("127.0.0.1", port), Counting("127.0.0.2", port)]
    try:
        _refused_before_any_connection(port, tmp_path)
        assert [c.accepted() for c in listeners] == [0, 0]
    finally:
        for c in listeners:
            c.close()


def _refused_before_any_connection(port: int, tmp_path: Path) -> None:
    url = f"git://{NAME}:{port}/r.git"
    # a refused address first (link-local metadata), then one the daemon listens on
    access = FetchAccess(GIT_DEFAULT, resolve=Resolver(["169.254.169.254", "127.0.0.1"]))
    with pytest.raises(RepositoryError, match=r"169\.254\.169\.254 \(link-local\)") as err:
        open_mirror(tmp_path / "m", 1, url, access)
    assert str(err.value).startswith(f"cannot fetch git://{NAME}:{port}/r.git: host ")
    # and loopback itself is refused by default
    with pytest.raises(RepositoryError, match=r"127\.0\.0\.1 \(loopback\).*ALLOW_PRIVATE"):
        open_mirror(
            tmp_path / "m", 1, url, FetchAccess(GIT_DEFAULT, resolve=Resolver(["127.0.0.1"]))
        )


def test_git_daemon_resolution_that_changes_is_not_followed(
    daemons: tuple[int, GitRepoBuilder, Daemon, Daemon], tmp_path: Path
) -> None:
    """Checked once as 127.0.0.1; any later lookup would answer 127.0.0.2, where another
    daemon serves another repository (DNS rebinding). The fetch goes to the checked one."""
    port, good, daemon, evil = daemons
    resolve = Resolver(["127.0.0.1"], ["127.0.0.2"])
    mirror = open_mirror(
        tmp_path / "m", 1, f"git://{NAME}:{port}/r.git", FetchAccess(GIT_PRIVATE, resolve=resolve)
    )
    assert resolve_head(mirror, None) == good.head()
    assert resolve.calls == [NAME]  # resolved once
    assert "Connection from 127.0.0.1" in daemon.log()
    assert evil.front is not None
    assert evil.front.accepted() == 0


def test_git_daemon_unknown_repository_is_a_clear_error(
    daemons: tuple[int, GitRepoBuilder, Daemon, Daemon], tmp_path: Path
) -> None:
    port = daemons[0]
    access = FetchAccess(GIT_PRIVATE, resolve=Resolver(["127.0.0.1"]))
    with pytest.raises(RepositoryError, match="cannot fetch") as err:
        open_mirror(tmp_path / "m", 1, f"git://{NAME}:{port}/nope.git", access)
    assert "Traceback" not in str(err.value)
    assert len(str(err.value)) < 500


# ------------------------------------------------------------------------------------ https


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (also its own CA) and its key, by openssl."""
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Callable[[str], tuple[int, GitRepoBuilder, Path]]]:
    """`start(name)`: an https git server on 127.0.0.1 presenting a certificate for `name`;
    returns (port, repository, the certificate to trust)."""
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.skip("no openssl")
    stops: list[Callable[[], None]] = []

    def start(name: str) -> tuple[int, GitRepoBuilder, Path]:
        src = _repo(tmp_path / f"src-{name}", "served over tls")
        cert, key = _certificate(tmp_path, name)
        repo = Repo(str(src.path))
        repos: dict[str, BackendRepo] = {"/": repo}
        app: Any = make_wsgi_chain(DictBackend(repos))
        server = make_server("127.0.0.1", 0, app, WSGIServer, handler_class=_Quiet)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()

        def stop() -> None:
            server.shutdown()
            thread.join()
            server.server_close()
            repo.close()

        stops.append(stop)
        return server.server_port, src, cert

    yield start
    for stop in stops:
        stop()


def test_https_fetch_with_a_trusted_certificate(
    tls_server: Callable[[str], tuple[int, GitRepoBuilder, Path]], tmp_path: Path
) -> None:
    port, src, cert = tls_server(NAME)
    settings = Settings(
        data_dir=tmp_path, allowed_schemes="https", allow_private_hosts=True, ca_file=cert
    )
    access = fetch_access(settings)  # the runtime's own wiring of METRE_CA_FILE
    resolve = Resolver(["127.0.0.1"])
    access = FetchAccess(access.policy, access.credentials, resolve, access.ca_file)
    mirror = open_mirror(tmp_path / "m", 1, f"https://{NAME}:{port}/", access)
    assert resolve_head(mirror, None) == src.head()
    assert resolve.calls == [NAME]


def test_https_certificate_for_another_name_is_refused(
    tls_server: Callable[[str], tuple[int, GitRepoBuilder, Path]], tmp_path: Path
) -> None:
    """The server presents a valid, trusted certificate, but for other.metre.test: the
    host name is verified against the registered name, not the pinned address."""
    port, _, cert = tls_server("other.metre.test")
    access = FetchAccess(HTTPS_PRIVATE, resolve=Resolver(["127.0.0.1"]), ca_file=cert)
    with pytest.raises(RepositoryError) as err:
        open_mirror(tmp_path / "m", 1, f"https://{NAME}:{port}/", access)
    message = str(err.value)
    assert message.startswith(f"cannot fetch https://{NAME}:{port}/: the server's TLS certificate")
    assert "Hostname mismatch" in message
    assert NAME in message


def test_https_untrusted_certificate_is_refused(
    tls_server: Callable[[str], tuple[int, GitRepoBuilder, Path]], tmp_path: Path
) -> None:
    port, _, _ = tls_server(NAME)
    access = FetchAccess(HTTPS_PRIVATE, resolve=Resolver(["127.0.0.1"]))  # system CAs only
    with pytest.raises(RepositoryError, match=r"TLS certificate was refused .*self.signed"):
        open_mirror(tmp_path / "m", 1, f"https://{NAME}:{port}/", access)
