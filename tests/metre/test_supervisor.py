"""The supervisor's rules (metre/supervisor.py) over stand-in tasks: what ends a run, the order
in which stages stop, what is logged, and that no task outlives the run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from metre.supervisor import Role, Supervisor


class Journal:
    """Stand-in roles that write what happens to them, in order, into one list."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.started: dict[str, asyncio.Event] = {}

    def until_stopped(self, name: str) -> Role:
        self.started[name] = asyncio.Event()

        async def body(stop: asyncio.Event) -> None:
            self.events.append(f"{name} started")
            self.started[name].set()
            await stop.wait()
            self.events.append(f"{name} stopped")

        return body

    def after(self, name: str) -> Callable[[], Awaitable[None]]:
        async def hook() -> None:
            self.events.append(f"after {name}")

        return hook


def three_stages(journal: Journal) -> Supervisor:
    sup = Supervisor()
    first = sup.stage("first", after=journal.after("first"))
    sup.add(first, "a", journal.until_stopped("a"))
    sup.add(first, "b", journal.until_stopped("b"))
    second = sup.stage("second")
    sup.add(second, "c", journal.until_stopped("c"))
    third = sup.stage("third", after=journal.after("third"))
    sup.add(third, "d", journal.until_stopped("d"))
    return sup


async def test_a_stop_stops_the_stages_in_order_each_after_the_one_before() -> None:
    journal, stop = Journal(), asyncio.Event()
    sup = three_stages(journal)
    run = asyncio.create_task(sup.run(stop))
    for started in journal.started.values():
        await asyncio.wait_for(started.wait(), 5)
    stop.set()
    assert await asyncio.wait_for(run, 5) == []
    stops = [e for e in journal.events if not e.endswith("started")]
    assert set(stops[:2]) == {"a stopped", "b stopped"}
    assert stops[2:] == ["after first", "c stopped", "d stopped", "after third"]


async def test_tasks_are_found_by_name() -> None:
    journal, stop = Journal(), asyncio.Event()
    sup = three_stages(journal)
    run = asyncio.create_task(sup.run(stop))
    await asyncio.wait_for(journal.started["c"].wait(), 5)
    assert sup.task("c").get_name() == "c"
    assert not sup.task("c").done()
    with pytest.raises(KeyError, match="no task named 'nope'"):
        sup.task("nope")
    stop.set()
    await asyncio.wait_for(run, 5)
    assert all(sup.task(name).done() for name in "abcd")


async def test_a_failing_task_ends_the_run_and_the_others_stop_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal, stop = Journal(), asyncio.Event()
    sup = three_stages(journal)

    async def failing(stop: asyncio.Event) -> None:
        await asyncio.wait_for(journal.started["d"].wait(), 5)
        raise RuntimeError("boom")

    sup.add(sup.stage("fourth"), "failing", failing)
    with caplog.at_level(logging.ERROR, logger="metre.supervisor"):
        ended = await asyncio.wait_for(sup.run(stop), 5)
    assert ended == ["failing"]
    assert not stop.is_set()
    assert journal.events[-6:-4] in (["a stopped", "b stopped"], ["b stopped", "a stopped"])
    assert journal.events[-4:] == ["after first", "c stopped", "d stopped", "after third"]
    assert "role failing stopped: RuntimeError('boom')" in caplog.text
    assert isinstance(sup.failures["failing"], RuntimeError)
    (record,) = [r for r in caplog.records if r.name == "metre.supervisor"]
    assert record.exc_info is not None
    assert record.exc_info[1] is sup.failures["failing"]


async def test_a_task_that_returns_by_itself_ends_the_run() -> None:
    journal, stop = Journal(), asyncio.Event()
    sup = three_stages(journal)

    async def returns(stop: asyncio.Event) -> None:
        await asyncio.wait_for(journal.started["a"].wait(), 5)

    sup.add(sup.stage("fourth"), "returns", returns)
    assert await asyncio.wait_for(sup.run(stop), 5) == ["returns"]
    assert "d stopped" in journal.events
    assert sup.failures == {}


async def test_an_unwatched_task_ending_does_not_end_the_run() -> None:
    journal, stop = Journal(), asyncio.Event()
    sup = three_stages(journal)
    ended = asyncio.Event()

    async def helper(stop: asyncio.Event) -> None:
        ended.set()

    sup.add(sup.stage("helpers"), "helper", helper, watched=False)
    run = asyncio.create_task(sup.run(stop))
    await asyncio.wait_for(ended.wait(), 5)
    await asyncio.wait_for(sup.task("helper"), 5)
    # The helper has ended and every role is still waiting for its stop: only `stop` ends it.
    assert not run.done()
    assert not any(e.endswith("stopped") for e in journal.events)
    stop.set()
    assert await asyncio.wait_for(run, 5) == []


async def test_a_failure_while_stopping_is_logged_and_the_later_stages_still_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal, stop = Journal(), asyncio.Event()
    sup = Supervisor()

    async def fails_at_stop(stop: asyncio.Event) -> None:
        await stop.wait()
        raise OSError("cannot flush")

    sup.add(sup.stage("first"), "flusher", fails_at_stop)
    sup.add(sup.stage("second"), "c", journal.until_stopped("c"))
    run = asyncio.create_task(sup.run(stop))
    await asyncio.wait_for(journal.started["c"].wait(), 5)
    with caplog.at_level(logging.ERROR, logger="metre.supervisor"):
        stop.set()
        assert await asyncio.wait_for(run, 5) == []
    assert journal.events == ["c started", "c stopped"]
    assert "role flusher stopped: OSError('cannot flush')" in caplog.text


async def test_cancelling_the_run_leaves_no_task_behind() -> None:
    stop = asyncio.Event()
    sup = Supervisor()
    stuck_started = asyncio.Event()

    async def stuck(stop: asyncio.Event) -> None:
        stuck_started.set()
        await asyncio.Event().wait()  # ignores its stop

    only = sup.stage("only")
    sup.add(only, "stuck", stuck)
    run = asyncio.create_task(sup.run(stop))
    await asyncio.wait_for(stuck_started.wait(), 5)
    stop.set()
    while not only.stop.is_set():  # the run is now waiting for the stuck task to stop
        await asyncio.sleep(0)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    assert sup.task("stuck").cancelled()


async def test_an_error_of_the_run_itself_is_raised_as_it_is() -> None:
    journal, stop = Journal(), asyncio.Event()
    sup = three_stages(journal)

    def started() -> None:
        raise PermissionError("cannot write api.json")

    with pytest.raises(PermissionError, match=r"api\.json"):
        await asyncio.wait_for(sup.run(stop, started=started), 5)
    assert journal.events[-1] == "after third"  # the stages were stopped first


def test_names_and_stages_are_checked_when_declared() -> None:
    sup, other = Supervisor(), Supervisor()
    stage = sup.stage("s")
    with pytest.raises(ValueError, match="stage named 's'"):
        sup.stage("s")

    async def body(stop: asyncio.Event) -> None:
        return None

    sup.add(stage, "t", body)
    with pytest.raises(ValueError, match="task named 't'"):
        sup.add(stage, "t", body)
    with pytest.raises(ValueError, match="not one of this supervisor's"):
        sup.add(other.stage("s"), "u", body)
