"""create_app: the FastAPI application (I/O: HTTP in, PostgreSQL out).

In `metre up` the embedded runner hands over the store it already opened; as a distributed
role (`metre api`) the app opens its own pool from settings in its lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from metre.api import csvexport, openapi
from metre.api.deps import known_parameters, storable_text
from metre.api.instruments import HttpMetrics, RouteTemplates
from metre.api.responses import OrjsonResponse, error_body
from metre.api.routes import (
    catalogue,
    dashboard,
    files,
    health,
    hooks,
    identities,
    metrics,
    notifications,
    pipeline,
    releases,
    repos,
)
from metre.api.security import ApiGuard
from metre.contracts.retry import is_transient
from metre.processors.store import PgStore
from metre.readiness import Probe
from metre.settings import Settings

log = logging.getLogger(__name__)

_DATABASE_AWAY: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,
)
RETRY_AFTER_SECONDS = 2
"""What a 503 for an unavailable database asks clients to wait (the embedded one restarts in
about a second)."""


_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        if loc and loc[0] in _LOCATIONS:  # where the value was, not its name
            loc = loc[1:]
        where = ".".join(str(p) for p in loc)
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The raw errors may hold the offending input and exception objects; keep what explains.
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
        for e in exc.errors()
    ]


def _allowed_methods(app: FastAPI, request: Request) -> str:
    """Every method some route serves on this path (for a 405's Allow header)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _slash_redirect(app: FastAPI, request: Request) -> str | None:
    """Where a path that matched nothing would match with its trailing slash added or removed,
    as a relative reference (path and query only).

    Starlette's own redirect builds an absolute URL from the request's Host header, so any
    client could make the API answer with a Location on a host of its choosing.
    """
    path: str = request.scope.get("path", "")
    if path in ("", "/"):
        return None
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    if not other or other.startswith("//"):  # "//host" would be a reference to another host
        return None
    scope = {**request.scope, "path": other}
    if not any(route.matches(scope)[0] != Match.NONE for route in app.router.routes):
        return None
    raw: bytes = request.scope.get("raw_path") or path.encode()
    raw = raw.rstrip(b"/") if path.endswith("/") else raw + b"/"
    location = str(request.scope.get("root_path", "")) + raw.decode("latin-1")
    query: bytes = request.scope.get("query_string", b"")
    return location + ("?" + query.decode("latin-1") if query else "")


def create_app(
    settings: Settings,
    store: PgStore | None = None,
    *,
    readiness: Mapping[str, Probe] | None = None,
    required: Iterable[str] = ("database",),
    lag: Callable[[], Awaitable[int | None]] | None = None,
) -> FastAPI:
    """`readiness`: checks `/readyz` runs besides the database's (the bus); those named in
    `required` make the API unavailable when down, the others only degraded (metre.readiness).

    With METRE_READ_DATABASE_URL the app opens a second pool there for metric reads (api/deps.py
    `ReadStoreDep`); it connects on first use, so a replica that is away makes `/readyz` fail
    and its reads answer 503 without keeping the API from starting.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = store is None
        if owned:
            if settings.database_url is None:
                raise RuntimeError("metre api needs METRE_DATABASE_URL")
            app.state.store = await PgStore.connect(settings.database_url.get_secret_value())
        if settings.read_database_url is not None:
            dsn = settings.read_database_url.get_secret_value()
            app.state.read_store = await PgStore.connect(dsn, min_size=0)
        try:
            yield
        finally:
            if app.state.read_store is not None:
                await app.state.read_store.close()
                app.state.read_store = None
            if owned:
                await app.state.store.close()

    app = FastAPI(
        title="metre",
        summary="Software-development metrics over Git repositories",
        version="0.1.0",
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
        docs_url=None,  # served from local assets by metre.api.openapi
        redoc_url=None,
        # Every route's path and query strings are checked for text PostgreSQL cannot hold.
        dependencies=[Depends(storable_text), Depends(known_parameters)],
    )
    # Trailing-slash redirects are answered by http_error below, never from the Host header.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.store = store
    app.state.read_store = None
    app.state.readiness = dict(readiness or {})
    app.state.lag = lag  # the processors' consumer lag, for /api/v1/pipeline (None: unknown)
    app.state.required = frozenset(required)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 404 and (location := _slash_redirect(app, request)):
            return OrjsonResponse(
                error_body(307, f"moved to {location}"),
                status_code=307,
                headers={"Location": location},
            )
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route on the path only.
            headers = {**(headers or {}), "Allow": _allowed_methods(app, request)}
        return OrjsonResponse(
            error_body(exc.status_code, str(exc.detail)),
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> OrjsonResponse:
        return OrjsonResponse(
            error_body(422, _validation_message(exc), _clean_errors(exc)), status_code=422
        )

    async def unavailable(_: Request, exc: Exception) -> OrjsonResponse:
        if not is_transient(exc):
            log.exception("unhandled error", exc_info=exc)
            return OrjsonResponse(error_body(500, "internal error"), status_code=500)
        # The database is away (restarting, unreachable): come back later, not a bug.
        log.warning("database unavailable: %r", exc)
        return OrjsonResponse(
            error_body(503, "the database is unavailable; retry shortly"),
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    # Registered per class (not only under Exception, whose handler Starlette runs after
    # re-raising, closing the connection): a 503 is an answer, the connection stays usable.
    for cls in _DATABASE_AWAY:
        app.add_exception_handler(cls, unavailable)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> OrjsonResponse:
        log.exception("unhandled error", exc_info=exc)
        return OrjsonResponse(error_body(500, "internal error"), status_code=500)

    app.add_middleware(
        ApiGuard,
        tokens=settings.tokens,
        read_requires_token=settings.read_requires_token,
        rate=settings.rate_limit,
        burst=settings.rate_burst,
        trusted_proxies=settings.trusted_networks,
        limit_loopback=settings.rate_limit_loopback,
        auth_failure_limit=settings.auth_failure_limit,
        auth_backoff_cap=settings.auth_backoff_cap,
    )
    templates = RouteTemplates()
    app.add_middleware(HttpMetrics, templates=templates)  # outermost: counts the guard's answers
    app.include_router(health.router)
    templates.add(health.router.routes)
    for router in (
        repos.router,
        metrics.router,
        catalogue.router,
        files.router,
        pipeline.router,
        notifications.router,
        hooks.router,
        releases.router,
        identities.router,
    ):
        app.include_router(router, prefix="/api/v1")
        templates.add(router.routes, "/api/v1")
    dashboard.mount(app)
    templates.add(dashboard.router.routes)
    openapi.install(
        app,
        tokens=bool(settings.tokens),
        read_requires_token=settings.read_requires_token,
        rate_limited=settings.rate_limit > 0,
    )
    _document_csv(app)  # wraps the installed document: CSV on top of the security schemes
    templates.add(app.router.routes)  # the mount and the docs pages
    return app


def _document_csv(app: FastAPI) -> None:
    """Every metric endpoint also answers text/csv (api/csvexport.py): say so in /openapi.json."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = csvexport.document(plain())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
