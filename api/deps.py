"""Request-scoped dependencies: the stores and settings live on app.state (wired by create_app),
and the text check every route's path and query parameters go through."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from metre.api.schemas import text_problem
from metre.processors.store import PgStore
from metre.settings import Settings


def get_store(request: Request) -> PgStore:
    store: PgStore = request.app.state.store
    return store


def get_read_store(request: Request) -> PgStore:
    """The store metric reads go to: a replica's when METRE_READ_DATABASE_URL is set (results
    are stamped with the watermark they reflect, so a replica's lag shows and stays
    consistent), the primary's otherwise."""
    store: PgStore = request.app.state.read_store or request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def storable_text(request: Request) -> None:
    """Refuse (422) a path or query parameter PostgreSQL text cannot hold (a NUL, a lone
    surrogate), for every route at once: an app-wide dependency, so a route added later is
    covered without opting in. Bodies get the same check from `metre.api.schemas.Input`."""
    errors: list[dict[str, Any]] = []
    for name, value in request.path_params.items():
        if isinstance(value, str) and (problem := text_problem(value)):
            errors.append({"loc": ("path", name), "msg": problem, "type": "string_unstorable"})
    for name, value in request.query_params.multi_items():
        for text in (name, value):
            if problem := text_problem(text):
                errors.append({"loc": ("query", name), "msg": problem, "type": "string_unstorable"})
                break
    if errors:
        raise RequestValidationError(errors)


_QUERY_NAMES: dict[int, frozenset[str]] = {}
"""By id(route): routes live as long as their app, and APIRoute is not hashable."""


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters `route` takes (its own and its dependencies'), by their names in
    the URL; a metric endpoint also takes `format` (csv: api/csvexport.py)."""
    if (cached := _QUERY_NAMES.get(id(route))) is not None:
        return cached
    names: set[str] = set()
    todo: list[Dependant] = [route.dependant]
    while todo:
        d = todo.pop()
        names.update(p.alias for p in d.query_params)
        todo.extend(d.dependencies)
    if "/metrics/" in route.path or route.path.startswith("/metrics/"):
        names.add("format")
    _QUERY_NAMES[id(route)] = frozenset(names)
    return _QUERY_NAMES[id(route)]


async def known_parameters(request: Request) -> None:
    """Refuse (422) a query parameter the route does not take: a misspelt one
    (`?granulrity=week`) would otherwise be ignored in silence and the default served."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route)
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": f"this endpoint takes no parameter {name!r} (it takes: {takes})",
                    "type": "unknown_parameter",
                }
                for name in unknown
            ]
        )


StoreDep = Annotated[PgStore, Depends(get_store)]
ReadStoreDep = Annotated[PgStore, Depends(get_read_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
