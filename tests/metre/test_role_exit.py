"""A distributed role under the supervisor, over stand-ins for its store and bus: its tasks run
once both are open, a task ending by itself ends the run and the process exits 1 naming it, a
stop exits 0 (also while the role still waits for a dependency). The real roles are stopped
over the real broker and PostgreSQL in test_shutdown.py."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from metre import cli, runtime
from metre.contracts.bus import Bus
from metre.contracts.retry import RetryStopped
from metre.processors.store import PgStore
from metre.settings import Settings
from metre.supervisor import Supervisor, exit_status


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=SecretStr("postgresql://metre@127.0.0.1:1/metre"),
        kafka_bootstrap="127.0.0.1:1",
        health_port=0,
    )


class _Opened:
    """What the role opened, in order, and whether each was closed again."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def context(self, name: str, fails: Exception | None = None) -> Any:
        @contextlib.asynccontextmanager
        async def opened(*args: object, **kwargs: object) -> AsyncIterator[object]:
            if fails is not None:
                raise fails
            self.events.append(f"open {name}")
            try:
                yield object()
            finally:
                self.events.append(f"close {name}")

        return opened


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> _Opened:
    journal = _Opened()
    monkeypatch.setattr(runtime, "quiet_outages", lambda settings: None)
    monkeypatch.setattr(runtime, "open_store", journal.context("store"))
    monkeypatch.setattr(runtime, "open_bus", journal.context("bus"))
    return journal


async def test_a_task_ending_by_itself_ends_the_role_and_is_named(
    tmp_path: Path, opened: _Opened
) -> None:
    stopped = asyncio.Event()

    async def fails(stop: asyncio.Event) -> None:
        opened.events.append("fails runs")
        raise RuntimeError("boom")

    async def waits(stop: asyncio.Event) -> None:
        await stop.wait()
        stopped.set()

    def tasks(sup: Supervisor, bus: Bus, store: PgStore) -> None:
        stage = sup.stage("only")
        sup.add(stage, "fails", fails)
        sup.add(stage, "waits", waits)

    ended = await asyncio.wait_for(
        runtime._distributed(_settings(tmp_path), "poller", asyncio.Event(), tasks), 5
    )
    assert ended == ["fails"]
    assert stopped.is_set()  # the other task was stopped, not left running
    assert opened.events == ["open store", "open bus", "fails runs", "close bus", "close store"]
    assert exit_status(ended) == 1


async def test_a_stop_while_waiting_for_a_dependency_ends_the_role_cleanly(
    tmp_path: Path, opened: _Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "open_bus", opened.context("bus", RetryStopped("stopped")))

    def tasks(sup: Supervisor, bus: Bus, store: PgStore) -> None:
        raise AssertionError("no task is declared before the bus is open")

    ended = await runtime._distributed(_settings(tmp_path), "processor", asyncio.Event(), tasks)
    assert ended == []
    assert opened.events == ["open store", "close store"]
    assert exit_status(ended) == 0


@pytest.fixture
def own_signals() -> Iterator[None]:
    """The test process's SIGINT and SIGTERM handlers back after the CLI installed its own."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize(("ended", "status"), [([], 0), (["processor"], 1)])
@pytest.mark.usefixtures("own_signals")
def test_the_exit_status_is_decided_by_what_ended_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ended: list[str], status: int
) -> None:
    async def role(settings: Settings, stop: asyncio.Event) -> list[str]:
        return ended

    assert cli._serve(_settings(tmp_path), role) == status
    err = capsys.readouterr().err
    if ended:
        assert err == "metre: processor ended before the process was asked to stop\n"
    else:
        assert err == ""
