"""dulwich clients that connect only to an address the URL policy checked (I/O).

The name of a remote is resolved once (`ingest.urlpolicy.pinned_address`), every address is
checked, and the client built here connects to the checked address, never resolving again:

- http(s): dulwich's urllib3 client over `PinnedPoolManager`, whose connections open their
  socket to the pinned IP while the Host header, TLS SNI and certificate check keep the host
  name. The pool manager serves that one origin (scheme, host, port) only: a redirect to
  another host, port or scheme fails with `RedirectRefused` before any connection is made;
  redirects within the origin are followed (at most 5) on the same pinned address. Proxies
  from the environment or git configuration are not used. Credentials go in an
  ``Authorization`` header, which dulwich attaches only to requests for that origin.
- git://: dulwich's TCP client is given the IP literal as its host (the ``host=`` line of the
  request then names the IP, so name-based virtual hosting on a git daemon is not supported).
- ssh: the ``ssh`` program is run against the IP literal with ``HostKeyAlias=<host>`` (the
  known_hosts check stays on the host name) and ``BatchMode=yes`` (no prompts). Host blocks of
  the user's ssh_config that name the host do not apply; ssh authenticates with the keys of
  the account metre runs as (credentials from METRE_CREDENTIALS_FILE are http(s) only).

Submodules are never fetched: dulwich's fetch transfers the objects of the refs asked for, and
a gitlink is a commit id in a tree, not an object of this repository (tests/ingest/
test_mirror_policy.py checks it).
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
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
from dulwich.protocol import Protocol
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import HTTPError

from ingest.credentials import Credential
from ingest.urlpolicy import Remote

__all__ = ["PinnedPoolManager", "RedirectRefused", "pinned_client"]

CONNECT_TIMEOUT = 20.0
READ_TIMEOUT = 300.0
USER_AGENT = "git/2.0 (metre; dulwich)"


class RedirectRefused(HTTPError):
    """The server sent us to an origin other than the registered one."""


def _pinned_connection(base: type[HTTPConnection], address: str) -> type[HTTPConnection]:
    """`base` whose socket goes to `address`; `host` (Host header, SNI, cert) is unchanged."""

    class PinnedConnection(base):  # type: ignore[valid-type,misc]
        def _new_conn(self) -> socket.socket:
            name: str = self._dns_host  # type: ignore[has-type]
            self._dns_host = address
            try:
                sock: socket.socket = super()._new_conn()
            finally:
                self._dns_host = name
            return sock

    PinnedConnection.__name__ = f"Pinned{base.__name__}"
    return PinnedConnection


class PinnedPoolManager(urllib3.PoolManager):
    """A urllib3 pool manager for one origin whose connections all go to one checked address."""

    def __init__(self, scheme: str, host: str, port: int, address: str, **kw: Any) -> None:
        kw.setdefault("timeout", urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT))
        kw.setdefault("retries", urllib3.Retry(total=5, connect=0, read=0, redirect=5))
        kw.setdefault("headers", {"User-agent": USER_AGENT})
        super().__init__(**kw)
        self.origin = (scheme.lower(), host.lower(), port)
        self.address = address

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
        pool.ConnectionCls = _pinned_connection(base, self.address)
        return pool


class ClosingSSHGitClient(SSHGitClient):
    """dulwich's ssh client, whose ssh processes are closed (pipes closed, process waited for)
    when a fetch ends, also when the remote hangs up before the exchange starts (unknown
    repository, refused host key): dulwich leaves those to the garbage collector."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._opened: list[Protocol] = []

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        connection = super()._connect(cmd, path, protocol_version)
        self._opened.append(connection[0])
        return connection

    def fetch_pack(self, *args: Any, **kwargs: Any) -> FetchPackResult:
        try:
            return super().fetch_pack(*args, **kwargs)
        finally:
            while self._opened:
                self._opened.pop().close()  # idempotent after dulwich's own close


def pinned_client(
    remote: Remote,
    address: str,
    credential: Credential | None = None,
    ca_file: Path | None = None,
) -> tuple[GitClient, str]:
    """A dulwich client for `remote` that connects to `address`, and the path to fetch.
    https trusts the authorities of `ca_file` (PEM) if given, else the system's."""
    if remote.host is None or remote.port is None:
        raise ValueError("a local path has no network client")
    if remote.scheme in ("http", "https"):
        parts = urlsplit(remote.url)
        tls: dict[str, Any] = {"ca_certs": str(ca_file)} if ca_file is not None else {}
        manager = PinnedPoolManager(remote.scheme, remote.host, remote.port, address, **tls)
        client = Urllib3HttpGitClient(
            remote.url,
            pool_manager=manager,
            username=credential.username if credential else None,
            password=credential.secret if credential else None,
        )
        return client, parts.path
    _, path = get_transport_and_path(remote.url)  # only for dulwich's reading of the path
    if remote.scheme == "git":
        return TCPGitClient(address, remote.port), path
    if remote.scheme == "ssh":
        command = shlex.join(["ssh", "-o", f"HostKeyAlias={remote.host}", "-o", "BatchMode=yes"])
        client_ssh = ClosingSSHGitClient(
            address,
            port=remote.port,
            username=remote.username,
            vendor=SubprocessSSHVendor(),
            ssh_command=command,
        )
        return client_ssh, path
    raise ValueError(f"no network client for {remote.scheme}")
