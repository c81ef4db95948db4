"""Metric endpoints: results read from the additive tables the processors maintain.

Every result goes through api.provenance.serve: stamped with its provenance, ETag'd, cached
until the repository's watermark moves.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from api.deps import ReadStoreDep
from api.provenance import serve
from api.routes.repos import _ERRORS, RepoId
from api.schemas import ActivityOut, AuthorsOut, Granularity

router = APIRouter(tags=["metrics"])

DateFrom = Annotated[date | None, Query(alias="from", description="First day (inclusive)")]
DateTo = Annotated[date | None, Query(alias="to", description="Last day (inclusive)")]


def activity_params(start: date | None, end: date | None, granularity: str) -> dict[str, Any]:
    """The activity parameters as provenance shows them; 422 when from is after to."""
    if start is not None and end is not None and start > end:
        raise HTTPException(422, f"from ({start}) is after to ({end})")
    return {
        "granularity": granularity,
        "from": None if start is None else start.isoformat(),
        "to": None if end is None else end.isoformat(),
    }


@router.get(
    "/repos/{repo_id}/metrics/activity",
    summary="Commits, merges and lines added/removed per period (author date, UTC)",
    responses={200: {"model": ActivityOut}, 304: {"description": "Not modified"}, **_ERRORS},
)
async def activity(
    request: Request,
    repo_id: RepoId,
    store: ReadStoreDep,
    start: DateFrom = None,
    end: DateTo = None,
    granularity: Annotated[Granularity, Query(description="day, week or month")] = "day",
) -> Response:
    params = activity_params(start, end, granularity)

    async def compute(ids: list[int]) -> dict[str, Any]:
        series = await store.activity(ids[0], start, end, granularity)
        return {"repo_id": repo_id, "granularity": granularity, "series": series}

    return await serve(request, store, "activity", params, compute, repo_id=repo_id)


@router.get(
    "/repos/{repo_id}/metrics/authors",
    summary="Per-author totals, first and last commit",
    responses={200: {"model": AuthorsOut}, 304: {"description": "Not modified"}, **_ERRORS},
)
async def authors(request: Request, repo_id: RepoId, store: ReadStoreDep) -> Response:
    async def compute(ids: list[int]) -> dict[str, Any]:
        return {"repo_id": repo_id, "authors": await store.authors(ids[0])}

    return await serve(request, store, "authors", {}, compute, repo_id=repo_id)
