"""Request-scoped dependencies: the stores and settings live on app.state (wired by create_app),
and the text check every route's path and query parameters go through."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from api.schemas import text_problem
from metre.settings import Settings
from processors.store import PgStore


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
    covered without opting in. Bodies get the same check from `api.schemas.Input`."""
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


StoreDep = Annotated[PgStore, Depends(get_store)]
ReadStoreDep = Annotated[PgStore, Depends(get_read_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
