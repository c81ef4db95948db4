"""How uvicorn serves the API (I/O): client addresses from the socket only, and JSON for the
answers uvicorn writes itself.

- uvicorn's proxy-header handling is off. By default it trusts X-Forwarded-For from loopback
  and rewrites the client address before any middleware runs, so a local client could rotate
  that header and be a new client each request (a fresh rate-limit bucket each time). metre's
  own guard (metre.api.security) reads X-Forwarded-For only from METRE_TRUSTED_PROXIES; for that
  it must see the socket's peer.
- A request uvicorn cannot parse (a malformed request line or header) never reaches the app:
  uvicorn answers 400 itself, in plain text. The protocol classes here answer the same 400
  with the JSON error body every other answer of the API has; likewise the 500 uvicorn sends
  when an application fails before it started a response.
- No WebSocket: the API has none, and an upgrade request is then served as plain HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import orjson
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from metre.api.responses import error_body

__all__ = ["JsonH11Protocol", "json_error", "protocol_class", "server_config"]

MALFORMED = "the request is not valid HTTP/1.1 (malformed request line, header or framing)"


def json_error(status: int, message: str) -> bytes:
    """The error body of the API for an answer written below the application."""
    return orjson.dumps(error_body(status, message))


async def _send_json_500(protocol: Any) -> None:
    body = json_error(500, "internal error")
    await protocol.send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await protocol.send({"type": "http.response.body", "body": body, "more_body": False})


class JsonH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, its own 400 and 500 answered in JSON."""

    def send_400_response(self, msg: str) -> None:
        body = json_error(400, MALFORMED)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers)) or b"")
        self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()

    async def send_500_response(self) -> None:
        await _send_json_500(self)


def _httptools_protocol() -> type[asyncio.Protocol] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # uvicorn without its [standard] extra
        return None

    class JsonHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, its own 400 and 500 answered in JSON."""

        def send_400_response(self, msg: str) -> None:
            body = json_error(400, MALFORMED)
            head = [b"HTTP/1.1 400 Bad Request\r\n"]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
            self.transport.close()

        async def send_500_response(self) -> None:
            await _send_json_500(self)

    return JsonHttpToolsProtocol


def protocol_class(http: str = "auto") -> type[asyncio.Protocol]:
    """The HTTP/1.1 protocol to serve with: httptools when installed ("auto"), or "h11"."""
    if http not in ("auto", "h11", "httptools"):
        raise ValueError(f"http must be auto, h11 or httptools, not {http!r}")
    fast = _httptools_protocol() if http != "h11" else None
    if fast is None and http == "httptools":
        raise ValueError("httptools is not installed")
    return fast or JsonH11Protocol


def server_config(app: ASGIApp, *, http: str = "auto", **options: Any) -> uvicorn.Config:
    """A uvicorn.Config for the API: `options` as uvicorn takes them, never proxy headers."""
    for fixed in ("proxy_headers", "forwarded_allow_ips", "http", "ws"):
        if fixed in options:
            raise ValueError(f"{fixed} is fixed by metre.api.server")
    return uvicorn.Config(app, proxy_headers=False, http=protocol_class(http), ws="none", **options)
