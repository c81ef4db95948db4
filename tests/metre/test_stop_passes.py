"""A SIGTERMed role stops within its grace period even in the middle of a long pass: the
poller's reconcile and removal passes are cut short at `stop` (unit tests over stand-ins; the
real roles are stopped over the real broker in test_shutdown.py and the chaos run), and a
removal pass leaves no deleted mirror's pack mapped."""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
from collections.abc import Callable
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


def _mapped_files() -> str:
    return Path("/proc/self/maps").read_text()


def _mapped_mirror(mirror: Path, source: Path) -> list[str]:
    """A bare copy of `source` at `mirror`, its packs mapped by a reader; their paths."""
    from dulwich.repo import Repo

    from metre.ingest.packs import PackReader

    mirror.parent.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(mirror)],
                   check=True, capture_output=True)  # fmt: skip
    with Repo(str(mirror)) as repo:
        PackReader(repo.object_store).close()
    return [str(p) for p in (mirror / "objects" / "pack").glob("*.pack")]


async def test_a_removal_pass_unmaps_the_packs_of_the_mirrors_it_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, history_factory: Callable[..., Path]
) -> None:
    """The removal pass deletes mirrors in the process that mapped their packs (the poller's):
    right after it, none of them is mapped any more (their disk space is free)."""
    import shutil

    mirror = tmp_path / "mirrors" / "7.git"
    packs = await asyncio.to_thread(_mapped_mirror, mirror, history_factory(40, 2))
    assert packs
    assert all(p in _mapped_files() for p in packs)
    stop = asyncio.Event()
    calls = 0

    async def one_removal(*args: object, **kwargs: object) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first pass deletes the mirror, the second ends the loop
            shutil.rmtree(mirror)
            return 1
        stop.set()
        return 0

    monkeypatch.setattr("metre.processors.removals.publish_removals", one_removal)
    settings = Settings(data_dir=tmp_path)
    loop = passes.removal_loop(settings, None, None, stop, every=0.01)  # type: ignore[arg-type]
    await asyncio.wait_for(loop, 5)
    assert calls == 2
    gc.collect()
    maps = _mapped_files()
    assert not any(p in maps for p in packs)
