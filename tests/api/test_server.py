"""The API as `metre up` and `metre api` serve it: a real uvicorn (metre.serving.serve_api) on
loopback over the real PostgreSQL. Client addresses come from the socket (a rotating
X-Forwarded-For from loopback is one client, limited), and the answers uvicorn writes itself
for malformed requests are JSON like every other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

from metre.api.app import create_app
from metre.api.server import server_config
from metre.processors.store import PgStore
from metre.serving import QuietServer, bind_socket, serve_api
from metre.settings import Settings

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _served(settings: Settings, store: PgStore) -> AsyncIterator[str]:
    sock = bind_socket("127.0.0.1", 0)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_api(settings, store, sock, stop))
    port = sock.getsockname()[1]
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        sock.close()


async def test_rotating_forwarded_for_from_loopback_is_one_limited_client(
    tmp_path: Path, store: PgStore
) -> None:
    settings = Settings(data_dir=tmp_path, rate_limit=0.5, rate_burst=3)  # no trusted proxy
    async with _served(settings, store) as base, httpx.AsyncClient(base_url=base) as client:
        statuses = []
        for i in range(8):
            r = await client.get("/api/v1/repos", headers={"X-Forwarded-For": f"203.0.113.{i}"})
            statuses.append(r.status_code)
        assert statuses[:3] == [200, 200, 200]
        assert set(statuses[3:]) == {429}, statuses
        assert int(r.headers["retry-after"]) >= 1
        # a loopback client that does not forward stays exempt (the CLI of `metre up`)
        assert (await client.get("/api/v1/repos")).status_code == 200


async def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()  # the server closes after a 400
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return status, headers, body


MALFORMED = (
    b"GARBAGE\r\n\r\n",
    b"GET /api/v1/repos HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"GET /api/v1/repos\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/repos HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/v1/repos HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /\xff HTTP/9.9\r\n\r\n",
)


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_malformed_requests_get_a_json_400(tmp_path: Path, store: PgStore, http: str) -> None:
    app = create_app(Settings(data_dir=tmp_path, rate_limit=0), store)
    sock = bind_socket("127.0.0.1", 0)
    server = QuietServer(server_config(app, http=http, log_level="critical", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                await asyncio.sleep(0.02)
        port = sock.getsockname()[1]
        for request in MALFORMED:
            status, headers, body = await _raw(port, request)
            assert status == 400, (request, status, body)
            assert headers["content-type"] == "application/json", (request, headers)
            assert int(headers["content-length"]) == len(body)
            error = orjson.loads(body)["error"]
            assert error["status"] == 400
            assert "not valid HTTP" in error["message"]
        # a well-formed request on the same server is answered as usual
        status, headers, body = await _raw(
            port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        assert status == 200, body
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


def test_server_config_keeps_proxy_headers_off() -> None:
    config = server_config(create_app(Settings(data_dir=Path("/nonexistent-metre"))))
    assert config.proxy_headers is False
    with pytest.raises(ValueError, match="proxy_headers"):
        server_config(create_app(Settings(data_dir=Path("/nonexistent-metre"))), proxy_headers=True)
    assert isinstance(config, uvicorn.Config)
