"""Request-scoped dependencies: the stores and settings live on app.state (wired by create_app)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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


StoreDep = Annotated[PgStore, Depends(get_store)]
ReadStoreDep = Annotated[PgStore, Depends(get_read_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
