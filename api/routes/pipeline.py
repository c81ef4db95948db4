"""The pipeline's own state (I/O: reads PostgreSQL): poison records and repository states.

Processor counters live in each process and die with it; what is served here is persisted,
so every API replica answers the same, whatever processors were restarted.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import StoreDep
from api.responses import OrjsonResponse
from api.routes.repos import _ERRORS

router = APIRouter(tags=["pipeline"])


@router.get(
    "/pipeline",
    summary="Dead-lettered records (count and the latest) and repositories by state",
    responses={503: _ERRORS[503]},
)
async def pipeline(
    store: StoreDep,
    last: Annotated[int, Query(ge=0, le=1000, description="How many recent dead letters")] = 20,
) -> OrjsonResponse:
    count, recent = await store.dead_letter_summary(last)
    states: dict[str, int] = {}
    for repo in await store.list_repos():
        states[repo.state] = states.get(repo.state, 0) + 1
    return OrjsonResponse(
        {"dead_letters": {"count": count, "last": recent}, "repos": {"by_state": states}}
    )
