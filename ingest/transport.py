"""dulwich clients that connect only to an address the URL policy checked (I/O).

The name of a remote is resolved once (`metre.ingest.urlpolicy.pinned_address`), every address is
checked, and the client built here connects to the checked address, never resolving again:

- http(s): dulwich's urllib3 client over `PinnedPoolManager`, whose connections open their
  socket to the pinned IP while the Host header, TLS SNI and certificate check keep the host
  name. The pool manager serves that one origin (scheme, host, port) only: a redirect to
  another host, port or scheme fails with `RedirectRefused` before any connection is made;
  redirects within the origin are followed (at most 5) on the same pinned address. Proxies
  from the environment or git configuration are not used. Credentials go in an
  ``Authorization`` header, which dulwich attaches only to requests for that origin.
- git://: a TCP client (`DeadlineTCPGitClient`) connecting to the IP literal (the ``host=``
  line of the request then names the IP, so name-based virtual hosting on a git daemon is not
  supported).
- ssh: the ``ssh`` program is run against the IP literal with ``HostKeyAlias=<host>`` (the
  known_hosts check stays on the host name) and ``BatchMode=yes`` (no prompts). Host blocks of
  the user's ssh_config that name the host do not apply; ssh authenticates with the keys of
  the account metre runs as (credentials from METRE_CREDENTIALS_FILE are https only). With
  `SshReuse` the connection is kept open (OpenSSH's ControlMaster/ControlPersist) for the next
  fetch of the same (host name, address, port, user): a poll then skips the key exchange and
  authentication, most of an ssh poll's time. The control sockets live in a directory only
  metre's user can enter; a socket is named by a hash of all four, so a connection checked
  against one host name is never reused for another name, even at the same address.

Every client runs under the fetch's `metre.ingest.deadlines.FetchClock`: connect and idle timeouts
on each socket (urllib3's connect and read timeouts; ssh's ``ConnectTimeout`` and keep-alives),
and at the total deadline its sockets are shut down and its ssh processes killed. dulwich's
own TCP client has no timeout at all: it is not used.

Submodules are never fetched: dulwich's fetch transfers the objects of the refs asked for, and
a gitlink is a commit id in a tree, not an object of this repository (tests/ingest/
test_mirror_policy.py checks it).
"""

from __future__ import annotations

import hashlib
import os
import select
import shlex
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import urlsplit

import urllib3
from dulwich.client import (
    FetchPackResult,
    GitClient,
    SSHGitClient,
    SubprocessSSHVendor,
    TCPGitClient,
    Urllib3HttpGitClient,
    get_transport_and_path,
)
from dulwich.protocol import DEFAULT_GIT_PROTOCOL_VERSION_FETCH, Protocol
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import HTTPError

from metre.ingest.credentials import Credential
from metre.ingest.deadlines import FetchClock, FetchDeadlines, connect_socket
from metre.ingest.urlpolicy import Remote

__all__ = [
    "BufferedHttpGitClient",
    "DeadlineTCPGitClient",
    "PinnedPoolManager",
    "RedirectRefused",
    "SshReuse",
    "pinned_client",
]

USER_AGENT = "git/2.0 (metre; dulwich)"


class RedirectRefused(HTTPError):
    """The server sent us to an origin other than the registered one."""


def _pinned_connection(
    base: type[HTTPConnection], address: str, clock: FetchClock | None
) -> type[HTTPConnection]:
    """`base` whose socket goes to `address`; `host` (Host header, SNI, cert) is unchanged.
    With a `clock`, its socket (TLS-wrapped or not) is shut down at the total deadline."""

    class PinnedConnection(base):  # type: ignore[valid-type,misc]
        def _new_conn(self) -> socket.socket:
            if clock is not None:
                clock.check()
            name: str = self._dns_host  # type: ignore[has-type]
            self._dns_host = address
            try:
                sock: socket.socket = super()._new_conn()
            finally:
                self._dns_host = name
            if clock is not None:
                clock.watch_socket(sock)
            return sock

    PinnedConnection.__name__ = f"Pinned{base.__name__}"
    return PinnedConnection


class PinnedPoolManager(urllib3.PoolManager):
    """A urllib3 pool manager for one origin whose connections all go to one checked address."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        address: str,
        clock: FetchClock | None = None,
        **kw: Any,
    ) -> None:
        limits = clock.deadlines if clock is not None else FetchDeadlines()
        kw.setdefault("timeout", urllib3.Timeout(connect=limits.connect, read=limits.idle))
        kw.setdefault("retries", urllib3.Retry(total=5, connect=0, read=0, redirect=5))
        kw.setdefault("headers", {"User-agent": USER_AGENT})
        super().__init__(**kw)
        self.origin = (scheme.lower(), host.lower(), port)
        self.address = address
        self.clock = clock

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        if (scheme.lower(), host.lower().strip("[]"), port) != self.origin:
            raise RedirectRefused(
                f"refusing to follow the server to {scheme}://{host}:{port}: only the "
                "registered host is fetched"
            )
        pool = super()._new_pool(scheme, host, port, request_context)
        base = pool.ConnectionCls
        if not issubclass(base, HTTPConnection):  # pragma: no cover - urllib3's own classes are
            raise TypeError(f"cannot pin {base!r}")
        pool.ConnectionCls = _pinned_connection(base, self.address, self.clock)
        return pool


class _BufferedRead:
    """A response's ``read(n)`` served from chunks of at least `CHUNK` bytes: dulwich reads a
    pkt-line as two small reads, each through urllib3's whole read path, which was most of
    the CPU of listing a thousand refs. Each HTTP response is read to its end (stateless:
    the server never waits for the client mid-response), so reading ahead cannot stall."""

    CHUNK = 65536

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._buf = b""
        self._pos = 0

    def __call__(self, n: int) -> bytes:
        pos, end = self._pos, self._pos + n
        if end <= len(self._buf):
            self._pos = end
            return self._buf[pos:end]
        parts = [self._buf[pos:]]
        have = len(parts[0])
        self._buf, self._pos = b"", 0
        while have < n:
            chunk = self._read(max(self.CHUNK, n - have))
            if not chunk:
                return b"".join(parts)  # the end of the response: what there was
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self._buf = data[n:]
        return data[:n]


class BufferedHttpGitClient(Urllib3HttpGitClient):
    """dulwich's urllib3 client whose response bodies are read ahead (`_BufferedRead`)."""

    def _http_request(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        data: bytes | Iterator[bytes] | None = None,
        raise_for_status: bool = True,
    ) -> tuple[Any, Callable[[int], bytes]]:
        resp, read = super()._http_request(url, headers, data, raise_for_status)
        return resp, _BufferedRead(read)


class DeadlineTCPGitClient(TCPGitClient):
    """git:// to one checked address, each socket bounded by the fetch's clock (dulwich's
    `TCPGitClient` connects and reads without any timeout)."""

    def __init__(self, address: str, port: int, clock: FetchClock) -> None:
        super().__init__(address, port)
        self._clock = clock

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        if isinstance(path, str):
            path = path.encode(self._remote_path_encoding)
        sock = connect_socket(self._host, self._port, self._clock)
        rfile = sock.makefile("rb", -1)
        wfile = sock.makefile("wb", 0)

        def close() -> None:
            rfile.close()
            wfile.close()
            sock.close()

        def shutdown_write() -> None:
            wfile.flush()
            with suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

        proto = Protocol(
            rfile.read,
            wfile.write,
            close,
            report_activity=self._report_activity,
            shutdown_write=shutdown_write,
        )
        if path.startswith(b"/~"):
            path = path[1:]
        fetching = cmd == b"upload-pack"
        self.protocol_version = (
            (protocol_version or DEFAULT_GIT_PROTOCOL_VERSION_FETCH) if fetching else 0
        )
        # protocol v2 is asked for after two NULs, where old daemons do not look
        extra = b"\0\0version=2\0" if fetching and self.protocol_version == 2 else b""
        proto.send_cmd(b"git-" + cmd, path, b"host=" + self._host.encode("ascii") + extra)

        def can_read() -> bool:
            return _readable(sock)

        return proto, can_read, None


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


class DeadlineSSHVendor(SubprocessSSHVendor):
    """dulwich's ssh vendor whose processes are killed at the fetch's total deadline."""

    def __init__(self, clock: FetchClock | None) -> None:
        super().__init__()
        self._clock = clock

    def run_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._clock is not None:
            self._clock.check()
        wrapper = super().run_command(*args, **kwargs)
        proc: subprocess.Popen[bytes] = wrapper.proc
        if self._clock is not None:
            self._clock.on_expiry(proc.kill)
        return wrapper


class _ClosesProtocols(GitClient):
    """A client whose connections are closed (sockets closed, ssh processes waited for) when a
    fetch ends, also when it fails before the exchange starts (unknown repository, refused
    host key, a deadline): dulwich leaves those to the garbage collector."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._opened: list[Protocol] = []

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        connection = super()._connect(cmd, path, protocol_version)  # type: ignore[misc]
        self._opened.append(connection[0])
        return connection  # type: ignore[no-any-return]

    def fetch_pack(self, *args: Any, **kwargs: Any) -> FetchPackResult:
        try:
            return super().fetch_pack(*args, **kwargs)
        finally:
            while self._opened:
                with suppress(OSError):
                    self._opened.pop().close()  # idempotent after dulwich's own close


class ClosingSSHGitClient(_ClosesProtocols, SSHGitClient):
    """dulwich's ssh client whose ssh processes are always closed (`_ClosesProtocols`)."""


class ClosingTCPGitClient(_ClosesProtocols, DeadlineTCPGitClient):
    """git:// under the deadlines, its sockets always closed (`_ClosesProtocols`)."""


@dataclass(frozen=True, slots=True)
class SshReuse:
    """Keep ssh connections open between fetches: control sockets in `directory` (made
    private), each kept `seconds` after its last use."""

    directory: Path
    seconds: int

    MAX_SOCKET_PATH: ClassVar[int] = 100
    """A unix socket's path must fit in 108 bytes (and ssh appends a suffix while binding)."""

    def options(self, host: str, address: str, port: int, user: str | None) -> list[str]:
        """The ssh options reusing a connection for exactly this destination; none when the
        socket's path would be too long (then each fetch connects anew)."""
        key = "\0".join((host, address, str(port), user or "")).encode()
        path = self.directory / hashlib.sha256(key).hexdigest()[:32]
        if len(os.fsencode(path)) > self.MAX_SOCKET_PATH:
            return []
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # also when it existed: nobody else may reach a socket
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={path}",
                "-o", f"ControlPersist={self.seconds}"]  # fmt: skip


def pinned_client(
    remote: Remote,
    address: str,
    credential: Credential | None = None,
    ca_file: Path | None = None,
    clock: FetchClock | None = None,
    ssh_reuse: SshReuse | None = None,
) -> tuple[GitClient, str]:
    """A dulwich client for `remote` that connects to `address`, and the path to fetch.
    https trusts the authorities of `ca_file` (PEM) if given, else the system's. The client's
    connections obey `clock`'s deadlines (None: the default deadlines, not started)."""
    clock = clock or FetchClock(FetchDeadlines())
    if remote.host is None or remote.port is None:
        raise ValueError("a local path has no network client")
    if remote.scheme in ("http", "https"):
        parts = urlsplit(remote.url)
        tls: dict[str, Any] = {"ca_certs": str(ca_file)} if ca_file is not None else {}
        manager = PinnedPoolManager(
            remote.scheme, remote.host, remote.port, address, clock=clock, **tls
        )
        client = BufferedHttpGitClient(
            remote.url,
            pool_manager=manager,
            username=credential.username if credential else None,
            password=credential.secret if credential else None,
        )
        return client, parts.path
    _, path = get_transport_and_path(remote.url)  # only for dulwich's reading of the path
    if remote.scheme == "git":
        return ClosingTCPGitClient(address, remote.port, clock), path
    if remote.scheme == "ssh":
        limits = clock.deadlines
        alive = max(1, int(limits.idle / 3))
        reuse = (
            ssh_reuse.options(remote.host, address, remote.port, remote.username)
            if ssh_reuse is not None
            else []
        )
        command = shlex.join(
            ["ssh", "-o", f"HostKeyAlias={remote.host}", "-o", "BatchMode=yes",
             "-o", f"ConnectTimeout={max(1, int(limits.connect))}",
             "-o", f"ServerAliveInterval={alive}", "-o", "ServerAliveCountMax=3", *reuse]
        )  # fmt: skip
        client_ssh = ClosingSSHGitClient(
            address,
            port=remote.port,
            username=remote.username,
            vendor=DeadlineSSHVendor(clock),
            ssh_command=command,
        )
        return client_ssh, path
    raise ValueError(f"no network client for {remote.scheme}")
