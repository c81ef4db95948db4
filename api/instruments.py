"""Prometheus metrics of the HTTP API (docs/observability.md): requests by method, route
template and status, and their latency.

The route label is the template a request matched (`/api/v1/repos/{repo_id}`), never the path
itself (one series per repository id would grow without bound); a request no route matched is
`unmatched`. FastAPI's `scope["route"].path` lacks the prefix its router was included under,
so `RouteTemplates` remembers, per route object, the prefix it was included with.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from starlette.routing import BaseRoute, Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "metre_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "metre_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response body, by method and route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RouteTemplates:
    """Route object -> its full path template, recorded as routers are included."""

    def __init__(self) -> None:
        self._by_route: dict[int, str] = {}
        self._routes: list[BaseRoute] = []  # kept alive: ids stay unique
        self._patterns: list[tuple[re.Pattern[str], frozenset[str] | None, str]] = []

    def add(self, routes: Iterable[BaseRoute], prefix: str = "") -> None:
        for route in routes:
            path = getattr(route, "path", None)
            if path is None:
                continue
            template = matched = prefix + path
            if isinstance(route, Mount):
                template = matched.rstrip("/") + "/{path}"
                matched = matched.rstrip("/") + "/{path:path}"
            self._by_route[id(route)] = template
            self._routes.append(route)
            methods = getattr(route, "methods", None)
            pattern = compile_path(matched)[0]
            self._patterns.append((pattern, frozenset(methods) if methods else None, template))

    def of(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return self._match(scope)
        found = self._by_route.get(id(route))
        if found is not None:
            return found
        if isinstance(route, Mount):
            return route.path.rstrip("/") + "/{path}"
        return UNMATCHED

    def _match(self, scope: Scope) -> str:
        """The template of a request answered before routing (the guard's 401 and 429)."""
        path, method = str(scope.get("path", "")), str(scope.get("method", "GET")).upper()
        for pattern, methods, template in self._patterns:
            if pattern.match(path) and (methods is None or method in methods):
                return template
        return UNMATCHED


class HttpMetrics:
    """ASGI middleware, outermost: counts every answer, the guard's 401 and 429 included."""

    def __init__(self, app: ASGIApp, templates: RouteTemplates) -> None:
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = str(scope.get("method", "GET")).upper()
            method = method if method in _METHODS else "other"
            route = self.templates.of(scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - began)
