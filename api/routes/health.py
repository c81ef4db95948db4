"""Liveness and readiness for orchestrators (Kubernetes probes)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import StoreDep
from api.responses import OrjsonResponse, error_body

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> OrjsonResponse:
    return OrjsonResponse({"status": "ok"})


@router.get("/readyz", summary="The database is reachable")
async def readyz(store: StoreDep) -> OrjsonResponse:
    if await store.ping():
        return OrjsonResponse({"status": "ready"})
    return OrjsonResponse(error_body(503, "database unreachable"), status_code=503)
