"""Release endpoints: releases with the commits each brought, and lead time for changes per
period (docs/metrics.md, "releases" and "lead-time").

Thin: the reads are processors/releasereads.py, the derivation processors/metrics/releases.py,
provenance, ETags and caching api/provenance.py. The response shapes live here, beside the
only routes that use them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from metre.api.deps import StoreDep
from metre.api.provenance import serve
from metre.api.routes.repos import _ERRORS, RepoId
from metre.api.specquery import Values, query
from metre.processors.metrics.releases import LEAD_TIME, lead_time_result, releases_result
from metre.processors.releasereads import release_inputs

router = APIRouter(tags=["metrics"])
_NOT_MODIFIED: dict[int | str, dict[str, Any]] = {304: {"description": "Not modified"}}


class LeadTime(BaseModel):
    """Nearest-rank percentiles of lead times, in seconds (null without commits)."""

    p50: int | None
    p75: int | None
    p90: int | None


class ReleaseOut(BaseModel):
    tag: str
    sha: str
    time: str
    annotated: bool
    commits: int
    merges: int
    added: int
    removed: int
    lead_time: LeadTime


class ReleasesOut(BaseModel):
    repo_id: int
    releases: list[ReleaseOut]
    unreleased: int
    provenance: dict[str, Any]


class LeadTimePeriod(BaseModel):
    period: str
    releases: int
    commits: int
    lead_time: LeadTime


class LeadTimeTotal(BaseModel):
    releases: int
    commits: int
    lead_time: LeadTime


class LeadTimeOut(BaseModel):
    repo_id: int
    granularity: Literal["day", "week", "month"]
    series: list[LeadTimePeriod]
    total: LeadTimeTotal
    unreleased: int
    provenance: dict[str, Any]


@router.get(
    "/repos/{repo_id}/metrics/releases",
    summary="Releases (matching tags in the tracked history): commits, lines, lead times",
    responses={200: {"model": ReleasesOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def repo_releases(request: Request, repo_id: RepoId, store: StoreDep) -> Response:
    async def compute(ids: list[int]) -> dict[str, Any]:
        graph, tags = await release_inputs(store, ids[0])
        return {"repo_id": repo_id, **releases_result(graph, tags)}

    return await serve(request, store, "releases", {}, compute, repo_id=repo_id)


@router.get(
    "/repos/{repo_id}/metrics/lead-time",
    summary="Release frequency and lead time for changes per period (release time, UTC)",
    responses={200: {"model": LeadTimeOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def repo_lead_time(
    request: Request,
    repo_id: RepoId,
    store: StoreDep,
    values: Annotated[Values, Depends(query(LEAD_TIME))],
) -> Response:
    granularity = values["granularity"]

    async def compute(ids: list[int]) -> dict[str, Any]:
        graph, tags = await release_inputs(store, ids[0])
        return {
            "repo_id": repo_id,
            "granularity": granularity,
            **lead_time_result(graph, tags, granularity),
        }

    params = {"granularity": granularity}
    return await serve(request, store, "lead-time", params, compute, repo_id=repo_id)
