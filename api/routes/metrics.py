"""Metric endpoints: results read from the additive tables the processors maintain.

Every result goes through metre.api.provenance.serve: stamped with its provenance, ETag'd, cached
until the repository's watermark moves. Per-commit metrics take the merge and empty-commit
policy (`policy`, `merges`, `empty`: processors/metrics/policy.py).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from metre.api.deps import ReadStoreDep
from metre.api.paging import PageLimit, PageOffset, page
from metre.api.provenance import serve
from metre.api.routes.repos import _ERRORS, RepoId
from metre.api.schemas import ActivityOut, AuthorsOut, Granularity
from metre.processors import reads
from metre.processors.metrics.policy import Choice, Policy, Preset, resolve
from metre.processors.people import DEFAULT_BOTS, Bots

router = APIRouter(tags=["metrics"])

DateFrom = Annotated[date | None, Query(alias="from", description="First day (inclusive)")]
DateTo = Annotated[date | None, Query(alias="to", description="Last day (inclusive)")]
PresetQ = Annotated[
    Preset | None,
    Query(
        alias="policy",
        description="github: merges and empty commits excluded (GitHub's contributor "
        "statistics); all: both included. merges / empty override it",
    ),
]
MergesQ = Annotated[
    Choice | None,
    Query(description="Merge commits counted (include) or not (exclude); default per metric"),
]
BotsQ = Annotated[
    Bots,
    Query(
        description="People flagged as bots (well-known patterns, or PUT "
        "/api/v1/identities/{id}/bot) counted (include, the default) or left out (exclude)"
    ),
]
EmptyQ = Annotated[
    Choice | None,
    Query(description="Empty non-merge commits (no file in git log --numstat) counted or not"),
]


def policy_of(
    preset: Preset | None,
    merges: Choice | None,
    empty: Choice | None,
    default: Policy = Policy(),  # noqa: B008 (frozen)
) -> Policy:
    """The request's merge and empty-commit policy (`resolve`)."""
    return resolve(preset, merges, empty, default)


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
    preset: PresetQ = None,
    merges: MergesQ = None,
    empty: EmptyQ = None,
) -> Response:
    policy = policy_of(preset, merges, empty)
    params = {**activity_params(start, end, granularity), **policy.params()}

    async def compute(ids: list[int]) -> dict[str, Any]:
        series = await reads.activity(store, ids, start, end, granularity, policy)
        return {"repo_id": repo_id, "granularity": granularity, "series": series}

    return await serve(request, store, "activity", params, compute, repo_id=repo_id)


@router.get(
    "/repos/{repo_id}/metrics/authors",
    summary="Per-author totals, first and last commit",
    responses={200: {"model": AuthorsOut}, 304: {"description": "Not modified"}, **_ERRORS},
)
async def authors(
    request: Request,
    repo_id: RepoId,
    store: ReadStoreDep,
    preset: PresetQ = None,
    merges: MergesQ = None,
    empty: EmptyQ = None,
    bots: BotsQ = DEFAULT_BOTS,
    limit: PageLimit = None,
    offset: PageOffset = 0,
) -> Response:
    policy = policy_of(preset, merges, empty)
    params = {**policy.params(), "bots": bots, "limit": limit, "offset": offset}

    async def compute(ids: list[int]) -> dict[str, Any]:
        rows = await reads.authors(store, ids, policy, bots)
        return {"repo_id": repo_id, "authors": page(rows, limit, offset), "total": len(rows)}

    return await serve(request, store, "authors", params, compute, repo_id=repo_id, people=True)
