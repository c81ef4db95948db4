"""Bearer tokens and per-client rate limits for the HTTP API.

`TokenBucket` is pure (time is passed in); `ApiGuard` is the ASGI middleware (I/O) that applies
both to every request before routing, so routes added later are covered without opting in.

- Tokens: when METRE_API_TOKENS is set, writes (POST, PUT, PATCH, DELETE) need
  ``Authorization: Bearer <token>``; reads too with METRE_READ_REQUIRES_TOKEN. The given token
  is compared with every configured one by `hmac.compare_digest` (no early exit: the time
  taken says nothing about which token, or which prefix, matched). The liveness and readiness
  probes (/healthz, /readyz) stay open. A refusal is 401 with ``WWW-Authenticate: Bearer``.
- Rate limits: a token bucket per client (the token when one is given, else the client
  address): METRE_RATE_LIMIT requests per second, bursts of METRE_RATE_BURST; 0 disables.
  A refusal is 429 with ``Retry-After`` (whole seconds, at least 1). Loopback clients (the
  CLI and dashboard of `metre up`, tests, a reverse proxy on the same machine) are not
  limited: behind a local proxy every client has the proxy's address, so limit there.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from api.responses import error_body

__all__ = ["ApiGuard", "TokenBucket", "token_matches"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def token_matches(given: str, tokens: Sequence[str]) -> bool:
    """Whether `given` is one of `tokens`, comparing against all of them in constant time."""
    given_bytes = given.encode()
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given_bytes, token.encode())
    return found


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBucket:
    """Per-key token buckets: `rate` tokens per second, at most `burst` stored.

    At most `max_keys` keys are remembered (least recently used forgotten first): a forgotten
    key starts again with a full bucket, which only ever errs towards admitting.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Spend one token of `key` at time `now` (seconds, monotonic): 0.0 when admitted,
        else the seconds until a token will be available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


class ApiGuard:
    """ASGI middleware: authentication, then the rate limit, then the application."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: Sequence[str] = (),
        read_requires_token: bool = False,
        rate: float = 0.0,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.tokens = tuple(tokens)
        self.read_requires_token = read_requires_token
        self.bucket = TokenBucket(rate, burst) if rate > 0 else None
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _bearer(scope.get("headers", []))
        valid = token is not None and bool(self.tokens) and token_matches(token, self.tokens)
        method = scope.get("method", "GET").upper()
        guarded = method in WRITE_METHODS or self.read_requires_token
        if self.tokens and guarded and scope.get("path") not in OPEN_PATHS and not valid:
            message = (
                "this request needs an API token (Authorization: Bearer <token>)"
                if token is None
                else "the API token is not valid"
            )
            await _reply(send, 401, message)
            return
        if self.bucket is not None and not _loopback(scope):
            wait = self.bucket.take(_client_key(scope, token if valid else None), self.clock())
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await _reply(
                    send,
                    429,
                    f"too many requests: at most {self.bucket.rate:g} per second "
                    f"(bursts of {self.bucket.burst:g}); retry in {retry} s",
                    [(b"retry-after", str(retry).encode())],
                )
                return
        await self.app(scope, receive, send)


def _loopback(scope: Scope) -> bool:
    client = scope.get("client")
    try:
        return client is not None and ipaddress.ip_address(str(client[0])).is_loopback
    except ValueError:
        return False


def _client_key(scope: Scope, token: str | None) -> str:
    if token is not None:  # a valid token is one client, from whichever address
        return "token:" + hashlib.sha256(token.encode()).hexdigest()
    client = scope.get("client")
    return "addr:" + (str(client[0]) if client else "unknown")


async def _reply(
    send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps(error_body(status, message))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
