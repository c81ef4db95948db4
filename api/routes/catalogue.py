"""The metric catalogue, the contributors, punch card, commit size and languages endpoints, and
the organisation-wide forms `/api/v1/metrics/<name>?repos=1,2` (all repositories when omitted).

Thin: parameters are validated here, reads are in processors/reads.py, derivations in
processors/metrics/*, and provenance, ETags and caching in api/provenance.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from metre.api.deps import ReadStoreDep
from metre.api.provenance import Compute, parse_repos, serve
from metre.api.responses import OrjsonResponse
from metre.api.routes.metrics import (
    BotsQ,
    DateFrom,
    DateTo,
    EmptyQ,
    MergesQ,
    PresetQ,
    activity_params,
    policy_of,
)
from metre.api.routes.repos import _ERRORS, RepoId
from metre.api.schemas import (
    ActivityOrgOut,
    CatalogueOut,
    CommitSizeOut,
    ContributorsOut,
    Granularity,
    LanguagesOut,
    PunchcardOut,
)
from metre.processors import reads
from metre.processors.metrics import commit_size, contributors, punchcard
from metre.processors.metrics.catalogue import catalogue
from metre.processors.metrics.languages import MAPPING
from metre.processors.metrics.policy import COMMIT_SIZE_DEFAULT, Policy
from metre.processors.people import DEFAULT_BOTS, Bots
from metre.processors.store import PgStore

router = APIRouter(tags=["metrics"])

GranularityQ = Annotated[Granularity, Query(description="day, week or month")]
GapDays = Annotated[
    int,
    Query(ge=0, le=36_500, description="Days without a commit before a commit counts as a return"),
]
Repos = Annotated[
    str | None,
    Query(description="Comma-separated repository ids; all repositories when omitted"),
]
_NOT_MODIFIED: dict[int | str, dict[str, Any]] = {304: {"description": "Not modified"}}

# -- computations shared by a repository's form and the organisation-wide one -------------


def _contributors(
    store: PgStore, granularity: str, gap_days: int, policy: Policy, bots: Bots
) -> Compute:
    async def compute(ids: list[int]) -> dict[str, Any]:
        days = await reads.author_days(store, ids, policy, bots)
        return {
            "granularity": granularity,
            "gap_days": gap_days,
            "series": contributors.series(days, granularity, gap_days),
        }

    return compute


def _punchcard(store: PgStore, policy: Policy) -> Compute:
    async def compute(ids: list[int]) -> dict[str, Any]:
        return punchcard.result(await reads.punchcard(store, ids, policy))

    return compute


def _commit_size(store: PgStore, policy: Policy) -> Compute:
    async def compute(ids: list[int]) -> dict[str, Any]:
        return commit_size.summary(await reads.commit_sizes(store, ids, policy))

    return compute


def _languages(store: PgStore) -> Compute:
    async def compute(ids: list[int]) -> dict[str, Any]:
        return {"mapping": MAPPING, "languages": await reads.languages(store, ids)}

    return compute


def _activity(
    store: PgStore, start: date | None, end: date | None, granularity: str, policy: Policy
) -> Compute:
    async def compute(ids: list[int]) -> dict[str, Any]:
        series = await reads.activity(store, ids, start, end, granularity, policy)
        return {"granularity": granularity, "series": series}

    return compute


def _with_repo(repo_id: int, compute: Compute) -> Compute:
    async def wrapped(ids: list[int]) -> dict[str, Any]:
        return {"repo_id": repo_id, **await compute(ids)}

    return wrapped


async def _repo(
    request: Request, store: PgStore, repo_id: int, metric: str, params: dict[str, Any],
    make: Callable[[], Compute], people: bool = False,
) -> Response:  # fmt: skip
    compute = _with_repo(repo_id, make())
    return await serve(request, store, metric, params, compute, repo_id=repo_id, people=people)


# -- the catalogue -------------------------------------------------------------------------


@router.get("/metrics", summary="The metric catalogue", responses={200: {"model": CatalogueOut}})
async def list_metrics() -> OrjsonResponse:
    return OrjsonResponse({"metrics": [e.json() for e in catalogue().values()]})


# -- one repository --------------------------------------------------------------------------


@router.get(
    "/repos/{repo_id}/metrics/contributors",
    summary="Active, new, returning and cumulative contributors per period",
    responses={200: {"model": ContributorsOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def repo_contributors(
    request: Request, repo_id: RepoId, store: ReadStoreDep,
    granularity: GranularityQ = "month", gap_days: GapDays = contributors.DEFAULT_GAP_DAYS,
    preset: PresetQ = None, merges: MergesQ = None, empty: EmptyQ = None,
    bots: BotsQ = DEFAULT_BOTS,
) -> Response:  # fmt: skip
    policy = policy_of(preset, merges, empty)
    params = {"granularity": granularity, "gap_days": gap_days, **policy.params(), "bots": bots}
    make = lambda: _contributors(store, granularity, gap_days, policy, bots)  # noqa: E731
    return await _repo(request, store, repo_id, "contributors", params, make, people=True)


@router.get(
    "/repos/{repo_id}/metrics/punchcard",
    summary="Commits by weekday (0 = Monday) and hour, in the author's own time zone",
    responses={200: {"model": PunchcardOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def repo_punchcard(
    request: Request, repo_id: RepoId, store: ReadStoreDep,
    preset: PresetQ = None, merges: MergesQ = None, empty: EmptyQ = None,
) -> Response:  # fmt: skip
    policy = policy_of(preset, merges, empty)
    make = lambda: _punchcard(store, policy)  # noqa: E731
    return await _repo(request, store, repo_id, "punchcard", policy.params(), make)


@router.get(
    "/repos/{repo_id}/metrics/commit-size",
    summary="Files and lines changed per non-merge commit: percentiles and histogram",
    responses={200: {"model": CommitSizeOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def repo_commit_size(
    request: Request, repo_id: RepoId, store: ReadStoreDep,
    preset: PresetQ = None, merges: MergesQ = None, empty: EmptyQ = None,
) -> Response:  # fmt: skip
    policy = policy_of(preset, merges, empty, COMMIT_SIZE_DEFAULT)
    make = lambda: _commit_size(store, policy)  # noqa: E731
    return await _repo(request, store, repo_id, "commit-size", policy.params(), make)


@router.get(
    "/repos/{repo_id}/metrics/languages",
    summary="Lines added, removed and net per language (from file names; binary files excluded)",
    responses={200: {"model": LanguagesOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def repo_languages(request: Request, repo_id: RepoId, store: ReadStoreDep) -> Response:
    return await _repo(request, store, repo_id, "languages", {}, lambda: _languages(store))


# -- organisation-wide ----------------------------------------------------------------------


@router.get(
    "/metrics/activity",
    summary="Activity summed over repositories",
    responses={200: {"model": ActivityOrgOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def org_activity(
    request: Request, store: ReadStoreDep, repos: Repos = None,
    start: DateFrom = None, end: DateTo = None, granularity: GranularityQ = "day",
    preset: PresetQ = None, merges: MergesQ = None, empty: EmptyQ = None,
) -> Response:  # fmt: skip
    policy = policy_of(preset, merges, empty)
    params = {**activity_params(start, end, granularity), **policy.params()}
    compute = _activity(store, start, end, granularity, policy)
    return await serve(request, store, "activity", params, compute, repo_ids=parse_repos(repos))


@router.get(
    "/metrics/contributors",
    summary="Contributors over repositories (one per individual: GET /api/v1/identities)",
    responses={200: {"model": ContributorsOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def org_contributors(
    request: Request, store: ReadStoreDep, repos: Repos = None,
    granularity: GranularityQ = "month", gap_days: GapDays = contributors.DEFAULT_GAP_DAYS,
    preset: PresetQ = None, merges: MergesQ = None, empty: EmptyQ = None,
    bots: BotsQ = DEFAULT_BOTS,
) -> Response:  # fmt: skip
    policy = policy_of(preset, merges, empty)
    params = {"granularity": granularity, "gap_days": gap_days, **policy.params(), "bots": bots}
    compute = _contributors(store, granularity, gap_days, policy, bots)
    ids = parse_repos(repos)
    return await serve(request, store, "contributors", params, compute, repo_ids=ids, people=True)


@router.get(
    "/metrics/punchcard",
    summary="Punch card over repositories",
    responses={200: {"model": PunchcardOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def org_punchcard(
    request: Request, store: ReadStoreDep, repos: Repos = None,
    preset: PresetQ = None, merges: MergesQ = None, empty: EmptyQ = None,
) -> Response:  # fmt: skip
    ids = parse_repos(repos)
    policy = policy_of(preset, merges, empty)
    compute = _punchcard(store, policy)
    return await serve(request, store, "punchcard", policy.params(), compute, repo_ids=ids)


@router.get(
    "/metrics/commit-size",
    summary="Commit size distribution over repositories",
    responses={200: {"model": CommitSizeOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def org_commit_size(
    request: Request, store: ReadStoreDep, repos: Repos = None,
    preset: PresetQ = None, merges: MergesQ = None, empty: EmptyQ = None,
) -> Response:  # fmt: skip
    ids = parse_repos(repos)
    policy = policy_of(preset, merges, empty, COMMIT_SIZE_DEFAULT)
    compute = _commit_size(store, policy)
    return await serve(request, store, "commit-size", policy.params(), compute, repo_ids=ids)


@router.get(
    "/metrics/languages",
    summary="Lines by language over repositories",
    responses={200: {"model": LanguagesOut}, **_NOT_MODIFIED, **_ERRORS},
)
async def org_languages(request: Request, store: ReadStoreDep, repos: Repos = None) -> Response:
    ids = parse_repos(repos)
    return await serve(request, store, "languages", {}, _languages(store), repo_ids=ids)
