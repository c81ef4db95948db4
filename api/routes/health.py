"""Liveness and readiness for orchestrators (Kubernetes probes)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request

from api.deps import StoreDep
from api.responses import OrjsonResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> OrjsonResponse:
    return OrjsonResponse({"status": "ok"})


async def _check(probe: Callable[[], Awaitable[bool]]) -> str:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            if await probe():
                return "up"
    return "down"


@router.get(
    "/readyz",
    summary="The database (and the bus, where this process has one) answers",
    description='200 `{"status": "ready", "checks": {"database": "up", ...}}` when every check '
    'is up; 503 `{"status": "unavailable", "checks": {...}, "error": {...}}` otherwise.',
    responses={503: {"description": "A check is down (the body names which)"}},
)
async def readyz(request: Request, store: StoreDep) -> OrjsonResponse:
    probes: dict[str, Callable[[], Awaitable[bool]]] = {"database": store.ping}
    probes.update(request.app.state.readiness)
    results = await asyncio.gather(*(_check(p) for p in probes.values()))
    checks = dict(zip(probes, results, strict=True))
    down = sorted(name for name, state in checks.items() if state != "up")
    if not down:
        return OrjsonResponse({"status": "ready", "checks": checks})
    message = f"{' and '.join(down)} unreachable"
    return OrjsonResponse(
        {"status": "unavailable", "checks": checks, "error": {"status": 503, "message": message}},
        status_code=503,
    )
