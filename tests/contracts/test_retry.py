"""The roles' one retry policy (metre/contracts/retry.py): pure logic over a real event loop."""

from __future__ import annotations

import asyncio
import random

import pytest

from metre.contracts.retry import Backoff, RetryStopped, always, retry

FAST = Backoff(0.001, 0.004)


def test_backoff_grows_to_its_cap_and_stays_in_the_upper_half() -> None:
    rng = random.Random(3)
    for attempt in range(70):
        ceiling = min(0.004, 0.001 * 2**attempt)
        assert ceiling / 2 <= FAST.delay(attempt, rng) <= ceiling


async def test_retries_transient_failures_until_success() -> None:
    calls: list[int] = []
    seen: list[BaseException] = []

    async def op() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionRefusedError("not yet")
        return "up"

    assert await retry(op, FAST, on_retry=seen.append) == "up"
    assert len(calls) == 4
    assert [type(e) for e in seen] == [ConnectionRefusedError] * 3


async def test_other_failures_propagate_at_once() -> None:
    calls: list[int] = []

    async def op() -> None:
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await retry(op, FAST)
    assert calls == [1]
    calls.clear()
    with pytest.raises(ValueError, match="a bug"):  # `always` retries all until the deadline
        await retry(op, FAST, retriable=always, deadline=asyncio.get_running_loop().time() + 0.05)
    assert len(calls) > 1


async def test_stop_ends_the_wait_with_retry_stopped() -> None:
    stop = asyncio.Event()

    async def op() -> None:
        stop.set()
        raise TimeoutError

    with pytest.raises(RetryStopped, match="waiting for the broker"):
        await retry(op, Backoff(60.0, 60.0), stop=stop, what="the broker")
