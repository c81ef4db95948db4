"""Release endpoints: releases with the commits each brought, and lead time for changes per
period (docs/metrics.md, "releases" and "lead-time").

Thin: the reads are processors/releasereads.py, the derivation processors/metrics/releases.py,
provenance, ETags and caching api/provenance.py. The response shapes live here, beside the
only routes that use them. Releases and lead time at each granularity read the same inputs (the
whole commit graph), kept in a small per-app memo so that one read serves them all.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from metre.api.deps import StoreDep
from metre.api.provenance import serve
from metre.api.routes.repos import _ERRORS, RepoId
from metre.api.specquery import Values, query
from metre.processors.metrics.releases import (
    LEAD_TIME,
    Node,
    Tag,
    lead_time_result,
    releases_result,
)
from metre.processors.reads import stamps
from metre.processors.releasereads import release_inputs
from metre.processors.store import PgStore

router = APIRouter(tags=["metrics"])
_NOT_MODIFIED: dict[int | str, dict[str, Any]] = {304: {"description": "Not modified"}}

Inputs = tuple[dict[str, Node], list[Tag]]


class ReleaseInputsMemo:
    """The latest release inputs, by (repository, generation, watermark, head): the stamp a
    result's identity holds, so an entry is as current as a cached result would be."""

    def __init__(self, max_entries: int = 2) -> None:
        self.max_entries = max_entries  # a graph is about 300 bytes per commit
        self._items: OrderedDict[tuple[Any, ...], Inputs] = OrderedDict()

    async def get(self, store: PgStore, repo_id: int) -> Inputs:
        (s,) = await stamps(store, [repo_id])
        key = (repo_id, s.generation, s.watermark, s.head)
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            return found
        inputs = await release_inputs(store, repo_id)
        if await stamps(store, [repo_id]) == [s]:  # no batch moved it under the read
            self._items[key] = inputs
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return inputs


def _memo(request: Request) -> ReleaseInputsMemo:
    memo: ReleaseInputsMemo | None = getattr(request.app.state, "release_memo", None)
    if memo is None:
        memo = request.app.state.release_memo = ReleaseInputsMemo()
    return memo


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
        graph, tags = await _memo(request).get(store, ids[0])
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
        graph, tags = await _memo(request).get(store, ids[0])
        return {
            "repo_id": repo_id,
            "granularity": granularity,
            **lead_time_result(graph, tags, granularity),
        }

    params = {"granularity": granularity}
    return await serve(request, store, "lead-time", params, compute, repo_id=repo_id)
