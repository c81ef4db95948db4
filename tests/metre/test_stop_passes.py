"""A SIGTERMed role stops within its grace period even in the middle of a long pass: the
poller's reconcile and removal passes are cut short at `stop` (unit tests over stand-ins; the
real roles are stopped over the real broker in test_shutdown.py and the chaos run)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from metre import passes, supervisor
from metre.settings import Settings


class _StuckBus:
    """A bus whose topic check never returns (a broker that accepts and never answers)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def ensure_topics(self, topics: Any) -> None:
        self.entered.set()
        await asyncio.Event().wait()


async def test_reconcile_loop_stops_in_the_middle_of_a_pass(tmp_path: Path) -> None:
    bus, stop = _StuckBus(), asyncio.Event()
    settings = Settings(data_dir=tmp_path)
    loop = asyncio.create_task(passes.reconcile_loop(settings, bus, None, stop))  # type: ignore[arg-type]
    await asyncio.wait_for(bus.entered.wait(), 5)
    stop.set()
    await asyncio.wait_for(loop, 5)  # without the cut it waits for the pass: forever


async def test_removal_loop_stops_in_the_middle_of_a_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, stop = asyncio.Event(), asyncio.Event()

    async def stuck(*args: object, **kwargs: object) -> None:
        entered.set()
        await asyncio.Event().wait()

    monkeypatch.setattr("metre.processors.removals.publish_removals", stuck)
    settings = Settings(data_dir=tmp_path)
    loop = asyncio.create_task(passes.removal_loop(settings, None, None, stop))  # type: ignore[arg-type]
    await asyncio.wait_for(entered.wait(), 5)
    stop.set()
    await asyncio.wait_for(loop, 5)


async def test_a_slow_shutdown_names_what_it_waits_for(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()

    async def hanging_pass() -> None:
        await asyncio.Event().wait()

    hung = asyncio.create_task(hanging_pass(), name="hung-pass")
    stop.set()
    with caplog.at_level(logging.ERROR, logger="metre.supervisor"):
        await asyncio.wait_for(supervisor.name_slow_shutdown(stop, after=0.05), 5)
    hung.cancel()
    text = caplog.text
    assert "still stopping after 0.05 s" in text
    assert "pending: hung-pass at " in text
    assert "in hanging_pass" in text
