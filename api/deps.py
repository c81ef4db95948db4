"""Request-scoped dependencies: the store and settings live on app.state (wired by create_app)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from metre.settings import Settings
from processors.store import PgStore


def get_store(request: Request) -> PgStore:
    store: PgStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[PgStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
