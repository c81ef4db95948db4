"""The pipeline's own state (I/O: reads PostgreSQL): poison records and repository states.

Processor counters live in each process and die with it; what is served here is persisted,
so every API replica answers the same, whatever processors were restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, Request

from metre.api.deps import StoreDep
from metre.api.responses import OrjsonResponse
from metre.api.routes.repos import _ERRORS
from metre.processors.busmarks import data_loss_status

router = APIRouter(tags=["pipeline"])


@router.get(
    "/pipeline",
    summary="Dead-lettered records (count and the latest), data loss on the bus (count and the "
    "latest, with its heal), repositories by state (and those lagging) and the processors' "
    "consumer lag on the commits topic (null where this process cannot ask the bus)",
    responses={503: _ERRORS[503]},
)
async def pipeline(
    request: Request,
    store: StoreDep,
    last: Annotated[int, Query(ge=0, le=1000, description="How many recent dead letters")] = 20,
) -> OrjsonResponse:
    count, recent = await store.dead_letter_summary(last)
    states: dict[str, int] = {}
    lagging = []
    for repo in await store.list_repos():
        states[repo.state] = states.get(repo.state, 0) + 1
        if repo.lagging_reason is not None:
            lagging.append({"id": repo.id, "reason": repo.lagging_reason})
    loss = await data_loss_status(store.pool)
    lag: int | None = None
    if request.app.state.lag is not None:
        # A broker that is away or changing: the lag is unknown, and the rest is still served.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                lag = await request.app.state.lag()
    return OrjsonResponse(
        {
            "lag": {"commits": lag},
            "dead_letters": {"count": count, "last": recent},
            "repos": {"by_state": states, "lagging": lagging},
            "data_loss": {"count": loss.count, "unhealed": loss.unhealed, "last": loss.last},
        }
    )
