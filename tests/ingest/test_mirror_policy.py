"""Fetches under the URL policy, against loopback smart-HTTP servers (dulwich's WSGI server).

Pinning (the checked address is the one connected to), redirects, credentials that never leak,
submodules that are never fetched. Only 127.0.0.1 is ever a target.
"""

from __future__ import annotations

import base64
import logging
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from dulwich.objects import ObjectID
from dulwich.repo import Repo
from dulwich.server import BackendRepo, DictBackend
from dulwich.web import make_wsgi_chain

from metre.api.app import create_app
from metre.contracts.bus import InMemoryBus
from metre.ingest.credentials import Credential
from metre.ingest.git.errors import RepositoryError
from metre.ingest.mirror import FetchAccess, open_mirror, resolve_head
from metre.ingest.poller import Poller, PollerConfig
from metre.ingest.urlpolicy import UrlPolicy
from metre.processors.store import PgStore
from metre.settings import Settings
from tests.fixtures.gitrepo import GitRepoBuilder, run_git

LOOPBACK = UrlPolicy(frozenset({"http"}), allow_private_hosts=True)
LOOPBACK_TLS = UrlPolicy(frozenset({"https", "http"}), allow_private_hosts=True)
SECRET = "s3cr3t-Tok3n-9f8e7d"
BASIC = base64.b64encode(f"metre-bot:{SECRET}".encode()).decode()
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class GitServer:
    port: int
    hosts: list[str] = field(default_factory=list)
    auths: list[str | None] = field(default_factory=list)
    require: str | None = None
    """Expected Authorization header value; None: open."""
    redirects: dict[str, str] = field(default_factory=dict)
    """Path prefix -> URL prefix: such requests get a 302 to the URL prefix + the rest."""
    scheme: str = "http"
    ca_file: Path | None = None
    """The certificate an https server presents (its own CA)."""

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the address 127.0.0.1 (its own CA) and its key."""
    if shutil.which("openssl") is None:  # pragma: no cover
        pytest.skip("no openssl")
    cert, key = directory / "loopback.crt", directory / "loopback.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _serve(repo_path: Path, tls: tuple[Path, Path] | None = None) -> Iterator[GitServer]:
    repo = Repo(str(repo_path))
    repos: dict[str, BackendRepo] = {"/": repo}
    git_app = make_wsgi_chain(DictBackend(repos))
    state = GitServer(port=0)

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        state.hosts.append(environ.get("HTTP_HOST", ""))
        state.auths.append(environ.get("HTTP_AUTHORIZATION"))
        path = environ["PATH_INFO"]
        prefix = next((p for p in state.redirects if path.startswith(p)), None)
        if prefix is not None:
            target = state.redirects[prefix] + path[len(prefix) :]
            if environ.get("QUERY_STRING"):
                target += "?" + environ["QUERY_STRING"]
            start("302 Found", [("Location", target), ("Content-Length", "0")])
            return [b""]
        if state.require is not None and environ.get("HTTP_AUTHORIZATION") != state.require:
            start(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Length", "0")],
            )
            return [b""]
        result: Iterable[bytes] = git_app(environ, start)
        return result

    server = make_server("127.0.0.1", 0, app, WSGIServer, handler_class=_Quiet)
    state.port = server.server_port
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        state.scheme, state.ca_file = "https", tls[0]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        repo.close()


@pytest.fixture
def source(tmp_path: Path) -> GitRepoBuilder:
    b = GitRepoBuilder(tmp_path / "source")
    b.write("a.txt", b"one\n")
    b.commit("first", date="2021-01-01T00:00:00+0000")
    return b


@pytest.fixture
def server(source: GitRepoBuilder) -> Iterator[GitServer]:
    yield from _serve(source.path)


@pytest.fixture
def https_server(source: GitRepoBuilder, tmp_path: Path) -> Iterator[GitServer]:
    yield from _serve(source.path, _certificate(tmp_path))


@pytest.fixture
def other(tmp_path: Path) -> Iterator[GitServer]:
    b = GitRepoBuilder(tmp_path / "other")
    b.write("evil.txt", b"evil\n")
    b.commit("other", date="2021-01-01T00:00:00+0000")
    yield from _serve(b.path)


def fixed(table: dict[str, Sequence[str]]) -> Callable[[str, int], Sequence[str]]:
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"{host} does not resolve")
        return table[host]

    return resolve


def test_fetch_connects_to_the_checked_address_with_the_host_name(
    server: GitServer, source: GitRepoBuilder, tmp_path: Path
) -> None:
    # git.metre.test does not exist in DNS: the fetch can only work through the pinned address,
    # and the server sees the name (Host header) rather than the address.
    access = FetchAccess(LOOPBACK, resolve=fixed({"git.metre.test": ["127.0.0.1"]}))
    url = f"http://git.metre.test:{server.port}/"
    mirror = open_mirror(tmp_path / "m", 1, url, access)
    assert resolve_head(mirror, None) == source.head()
    assert server.hosts
    assert set(server.hosts) == {f"git.metre.test:{server.port}"}


def test_default_policy_refuses_plain_http_and_private_hosts(
    server: GitServer, tmp_path: Path
) -> None:
    with pytest.raises(RepositoryError, match="unsupported URL scheme 'http'"):
        open_mirror(tmp_path / "m", 1, server.url)
    public_only = FetchAccess(UrlPolicy(frozenset({"http"})))
    with pytest.raises(RepositoryError, match=r"127\.0\.0\.1 \(loopback\)"):
        open_mirror(tmp_path / "m", 1, server.url, public_only)
    rebinding = FetchAccess(
        UrlPolicy(frozenset({"http"})),
        resolve=fixed({"rebind.test": ["93.184.215.14", "127.0.0.1"]}),
    )
    with pytest.raises(RepositoryError, match="loopback"):
        open_mirror(tmp_path / "m", 1, f"http://rebind.test:{server.port}/", rebinding)
    assert server.hosts == []  # nothing was sent anywhere


def test_redirect_to_another_host_is_refused(
    server: GitServer, other: GitServer, tmp_path: Path
) -> None:
    server.redirects["/"] = f"http://evil.metre.test:{other.port}/"
    access = FetchAccess(
        LOOPBACK, resolve=fixed({"evil.metre.test": ["127.0.0.1"], "ok.metre.test": ["127.0.0.1"]})
    )
    with pytest.raises(RepositoryError, match="only the registered host") as info:
        open_mirror(tmp_path / "m", 1, f"http://ok.metre.test:{server.port}/", access)
    assert "Traceback" not in str(info.value)
    assert server.hosts  # the first request was made
    assert other.hosts == []  # the redirect target was never contacted
    # another port on the same address is another origin too
    server.redirects["/"] = f"http://127.0.0.1:{other.port}/"
    with pytest.raises(RepositoryError, match="only the registered host"):
        open_mirror(tmp_path / "m", 1, server.url, FetchAccess(LOOPBACK))
    assert other.hosts == []


def test_redirect_within_the_origin_is_followed(
    server: GitServer, source: GitRepoBuilder, tmp_path: Path
) -> None:
    server.redirects["/moved/"] = server.url
    mirror = open_mirror(tmp_path / "m", 1, server.url + "moved/", FetchAccess(LOOPBACK))
    assert resolve_head(mirror, None) == source.head()
    assert any(h == f"127.0.0.1:{server.port}" for h in server.hosts)


def test_credentials_are_used_and_never_leak(
    https_server: GitServer,
    source: GitRepoBuilder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = https_server
    caplog.set_level(logging.DEBUG)
    for name in ("dulwich", "urllib3", "ingest"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    server.require = f"Basic {BASIC}"
    origin = f"127.0.0.1:{server.port}"
    plain = FetchAccess(LOOPBACK_TLS, ca_file=server.ca_file)
    with pytest.raises(RepositoryError, match="asks for credentials") as no_creds:
        open_mirror(tmp_path / "m", 1, server.url, plain)
    good = FetchAccess(
        LOOPBACK_TLS, credentials={origin: Credential("metre-bot", SECRET)}, ca_file=server.ca_file
    )
    mirror = open_mirror(tmp_path / "m", 2, server.url, good)
    assert resolve_head(mirror, None) == source.head()
    assert f"Basic {BASIC}" in server.auths  # the credential really was sent
    wrong = FetchAccess(
        LOOPBACK_TLS,
        credentials={origin: Credential("metre-bot", SECRET[:-1])},
        ca_file=server.ca_file,
    )
    with pytest.raises(RepositoryError, match="asks for credentials") as bad_creds:
        open_mirror(tmp_path / "m", 3, server.url, wrong)
    texts = [caplog.text, str(no_creds.value), str(bad_creds.value), repr(good)]
    texts += [run_git(mirror, "config", "--list").decode()]
    for text in texts:
        assert SECRET not in text
        assert SECRET[:-1] not in text
        assert BASIC not in text


def test_credentials_go_only_over_tls(server: GitServer, tmp_path: Path) -> None:
    """A credential keyed by host (or host:port) is never sent over plain http."""
    server.require = f"Basic {BASIC}"
    cred = Credential("metre-bot", SECRET)
    for n, key in enumerate(("127.0.0.1", f"127.0.0.1:{server.port}")):
        access = FetchAccess(LOOPBACK_TLS, credentials={key: cred})
        with pytest.raises(RepositoryError, match="asks for credentials"):
            open_mirror(tmp_path / "m", n + 1, server.url, access)
    assert server.auths
    assert all(a is None for a in server.auths)


def test_credentials_go_only_to_the_configured_port(
    https_server: GitServer, tmp_path: Path
) -> None:
    """A bare host key means https on port 443; another port of the host gets nothing."""
    server = https_server
    server.require = f"Basic {BASIC}"
    access = FetchAccess(
        LOOPBACK_TLS,
        credentials={
            "127.0.0.1": Credential("metre-bot", SECRET),
            f"127.0.0.1:{server.port + 1}": Credential("metre-bot", SECRET),
        },
        ca_file=server.ca_file,
    )
    with pytest.raises(RepositoryError, match="asks for credentials"):
        open_mirror(tmp_path / "m", 1, server.url, access)
    assert server.auths
    assert all(a is None for a in server.auths)


async def test_credentials_never_reach_the_registry_or_the_api(
    https_server: GitServer,
    source: GitRepoBuilder,
    tmp_path: Path,
    store: PgStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = https_server
    caplog.set_level(logging.DEBUG)
    for name in ("dulwich", "urllib3", "ingest", "api", "processors"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    server.require = f"Basic {BASIC}"
    settings = Settings(
        data_dir=tmp_path / "data", allowed_schemes="https", allow_private_hosts=True
    )
    app = create_app(settings, store)
    transport = httpx.ASGITransport(app=app)
    responses: list[str] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        for url in (server.url, server.url.rstrip("/") + "/wrong"):
            r = await client.post("/api/v1/repos", json={"url": url})
            assert r.status_code == 201, r.text
            responses.append(r.text)
        creds = {
            server.url: Credential("metre-bot", SECRET),
            server.url.rstrip("/") + "/wrong": Credential("metre-bot", SECRET + "x"),
        }
        poller = Poller(
            InMemoryBus(),
            store,
            PollerConfig(
                mirrors_dir=tmp_path / "m",
                topic="commits",
                access=FetchAccess(LOOPBACK_TLS, credentials=creds, ca_file=server.ca_file),
            ),
        )
        await poller.bus.start()
        await poller.bus.ensure_topics(["commits"])
        for _ in range(2):
            row = await store.claim_due_repo(60.0)
            assert row is not None
            await poller.poll(row)
        await poller.bus.stop()
        listing = await client.get("/api/v1/repos")
        responses.append(listing.text)
        for repo in listing.json()["repos"]:
            responses.append((await client.get(f"/api/v1/repos/{repo['id']}")).text)
    states = {r["url"]: (r["state"], r["error"]) for r in listing.json()["repos"]}
    assert states[server.url][0] == "idle"
    assert states[server.url.rstrip("/") + "/wrong"][0] == "failed"
    assert "credentials" in str(states[server.url.rstrip("/") + "/wrong"][1])
    rows = [repr(r) for r in await store.list_repos()]
    for text in [*responses, *rows, caplog.text]:
        assert SECRET not in text
        assert BASIC not in text


def test_submodules_are_never_fetched(tmp_path: Path) -> None:
    sub = GitRepoBuilder(tmp_path / "sub")
    sub.write("s.txt", b"sub\n")
    sub_head = sub.commit("sub", date="2021-01-01T00:00:00+0000")
    outer = GitRepoBuilder(tmp_path / "outer")
    outer.write(".gitmodules", f'[submodule "s"]\n\tpath = s\n\turl = {sub.path}\n'.encode())
    outer.gitlink("s", sub_head)
    outer.commit("with a submodule", date="2021-01-02T00:00:00+0000")
    mirror = open_mirror(tmp_path / "m", 1, str(outer.path))
    assert resolve_head(mirror, None) == outer.head()
    out = run_git(mirror, "cat-file", "-e", sub_head, check=False)
    assert out == b""
    with Repo(str(mirror)) as repo:
        assert not repo.object_store.contains_loose(ObjectID(sub_head.encode()))
        assert not repo.object_store.contains_packed(ObjectID(sub_head.encode()))
    assert not (mirror / "modules").exists()


async def test_pollers_apply_the_policy_decided_at_registration(
    server: GitServer, source: GitRepoBuilder, tmp_path: Path, store: PgStore
) -> None:
    """The API admits an http:// loopback remote (its settings allow it); a poller whose own
    settings are the defaults (https, public hosts) fetches it under the stored decision. A
    row without a stored decision (registered before migration 0015) gets the poller's own
    policy, and the refusal names the setting."""
    settings = Settings(
        data_dir=tmp_path / "data", allowed_schemes="http", allow_private_hosts=True
    )
    transport = httpx.ASGITransport(app=create_app(settings, store))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        r = await client.post("/api/v1/repos", json={"url": server.url})
        assert r.status_code == 201, r.text
    admitted = r.json()["id"]
    legacy = (await store.add_repo(server.url + "legacy", None)).id
    strict = Settings(data_dir=tmp_path / "poller")  # METRE_ALLOWED_SCHEMES=https, no private
    poller = Poller(
        InMemoryBus(),
        store,
        PollerConfig(
            mirrors_dir=tmp_path / "m", topic="commits", access=FetchAccess(strict.url_policy)
        ),
    )
    await poller.bus.start()
    await poller.bus.ensure_topics(["commits"])
    for _ in range(2):
        row = await store.claim_due_repo(60.0)
        assert row is not None
        await poller.poll(row)
    await poller.bus.stop()
    done, old = await store.get_repo(admitted), await store.get_repo(legacy)
    assert done is not None
    assert (done.state, done.error, done.head) == ("idle", None, source.head())
    assert old is not None
    assert old.state == "failed"
    assert "METRE_ALLOWED_SCHEMES" in str(old.error)
