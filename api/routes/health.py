"""Liveness, readiness and metrics for orchestrators (Kubernetes probes, Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from metre.api.deps import StoreDep
from metre.api.responses import OrjsonResponse
from metre.health import metrics_body, record_readiness, refresh_database_gauges
from metre.readiness import Probe, run_checks

router = APIRouter(tags=["health"])

_READY_EXAMPLE: dict[str, Any] = {"status": "ready", "checks": {"database": "up", "bus": "up"}}
_DEGRADED_EXAMPLE: dict[str, Any] = {
    "status": "degraded",
    "checks": {"database": "up", "bus": "down"},
    "details": {"bus": "broker at kafka-0:9092: KafkaConnectionError"},
    "degraded": ["bus"],
}
_UNAVAILABLE_EXAMPLE: dict[str, Any] = {
    "status": "unavailable",
    "checks": {"database": "down", "bus": "up"},
    "error": {"status": 503, "message": "database unreachable"},
}


@router.get("/healthz", summary="The process is alive")
async def healthz() -> OrjsonResponse:
    return OrjsonResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="The database and the bus answer",
    description="Each check is `up`, `degraded` or `down`. 200 `ready` when all are up; 200 "
    "`degraded` when the API can still serve (say the bus is away: reads go on, new commits "
    "wait), with `degraded` naming the checks and `details` saying why; 503 `unavailable` "
    "when the database is down.",
    responses={
        200: {
            "description": "Ready, or degraded but serving",
            "content": {
                "application/json": {
                    "examples": {
                        "ready": {"value": _READY_EXAMPLE},
                        "degraded": {"value": _DEGRADED_EXAMPLE},
                    }
                }
            },
        },
        503: {
            "description": "Not ready",
            "content": {"application/json": {"example": _UNAVAILABLE_EXAMPLE}},
        },
    },
)
async def readyz(request: Request, store: StoreDep) -> OrjsonResponse:
    probes: dict[str, Probe] = {"database": store.ping}
    required = frozenset(request.app.state.required)
    if request.app.state.read_store is not None:  # METRE_READ_DATABASE_URL: metric reads
        probes["read_database"] = request.app.state.read_store.ping
        required |= {"read_database"}
    probes.update(request.app.state.readiness)
    readiness = await run_checks(probes, required)
    record_readiness(readiness.checks)
    return OrjsonResponse(readiness.body(), status_code=readiness.http_status)


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process",
    description="The text exposition format; every metric is described in "
    "docs/observability.md. In `metre up` it holds every role's metrics (one process).",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def prometheus_metrics(store: StoreDep) -> Response:
    await refresh_database_gauges(store)
    return Response(metrics_body(), media_type=CONTENT_TYPE_LATEST)
