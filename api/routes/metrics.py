"""Metric endpoints: results read from the additive tables the processors maintain."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import StoreDep
from api.responses import OrjsonResponse
from api.routes.repos import _ERRORS, RepoId, _repo_or_404
from api.schemas import ActivityOut, AuthorsOut, Granularity

router = APIRouter(tags=["metrics"])


@router.get(
    "/repos/{repo_id}/metrics/activity",
    summary="Commits, merges and lines added/removed per period (author date, UTC)",
    responses={200: {"model": ActivityOut}, **_ERRORS},
)
async def activity(
    repo_id: RepoId,
    store: StoreDep,
    start: Annotated[date | None, Query(alias="from", description="First day (inclusive)")] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day (inclusive)")] = None,
    granularity: Annotated[Granularity, Query(description="day, week or month")] = "day",
) -> OrjsonResponse:
    if start is not None and end is not None and start > end:
        raise HTTPException(422, f"from ({start}) is after to ({end})")
    await _repo_or_404(store, repo_id)
    series = await store.activity(repo_id, start, end, granularity)
    return OrjsonResponse({"repo_id": repo_id, "granularity": granularity, "series": series})


@router.get(
    "/repos/{repo_id}/metrics/authors",
    summary="Per-author totals, first and last commit",
    responses={200: {"model": AuthorsOut}, **_ERRORS},
)
async def authors(repo_id: RepoId, store: StoreDep) -> OrjsonResponse:
    await _repo_or_404(store, repo_id)
    return OrjsonResponse({"repo_id": repo_id, "authors": await store.authors(repo_id)})
