"""Waiting that a role's `stop` event cuts short.

A loop that checks `stop` only between passes keeps a SIGTERMed role alive for as long as a
pass takes (a reconcile over a long history under load, a check waiting on a broker that is
restarting), past the grace period of whoever sent the signal. Every pass whose abandonment
is safe (what it published is published again, what it wrote is one transaction) runs under
`unless_stopped` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

__all__ = ["sleep_or_stop", "unless_stopped"]


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def unless_stopped(aw: Awaitable[object], stop: asyncio.Event) -> bool:
    """Wait for `aw` or for `stop`, whichever comes first; True if `aw` finished (its error,
    if any, is raised), False if it was cancelled because `stop` came first."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        finished = task.done()
        for t in (task, stopper):
            t.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
    if finished:
        task.result()
    return finished
