"""The metric catalogue, `GET /api/v1/metrics`: every spec of the registry, as declared
(processors/metrics/spec.py), with its parameters' types, defaults and bounds."""

from __future__ import annotations

from fastapi import APIRouter

from metre.api.responses import OrjsonResponse
from metre.api.schemas import CatalogueOut
from metre.processors.metrics.catalogue import catalogue

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="The metric catalogue", responses={200: {"model": CatalogueOut}})
async def list_metrics() -> OrjsonResponse:
    return OrjsonResponse({"metrics": [e.json() for e in catalogue().values()]})
