"""`unless_stopped`: a stop request cuts a pass short, a finished pass passes on its result."""

from __future__ import annotations

import asyncio

import pytest

from metre.ingest.stopping import sleep_or_stop, unless_stopped


async def test_stop_cancels_the_pass_and_says_so() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await asyncio.wait_for(unless_stopped(forever(), stop), 5) is False
    assert cancelled.is_set()


async def test_a_finished_pass_is_true_and_its_error_is_raised() -> None:
    stop = asyncio.Event()

    async def fine() -> int:
        return 1

    async def broken() -> None:
        raise ValueError("broken pass")

    assert await unless_stopped(fine(), stop) is True
    with pytest.raises(ValueError, match="broken pass"):
        await unless_stopped(broken(), stop)


async def test_sleep_ends_at_stop() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    await asyncio.wait_for(sleep_or_stop(stop, 3600), 5)
