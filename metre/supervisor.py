"""Supervision: the tasks of one process, by name, in stages that stop in a fixed order.

What happens when (the rules `metre up` relies on):

- Nothing is restarted here. A role that loses a dependency retries by itself
  (metre/contracts/retry.py), and the embedded PostgreSQL has a task of its own that restarts the
  server; a supervised task that ends has ended for good.
- The run ends at the process's stop, or as soon as one watched task ends before it, by
  returning or by raising. Then every stage is stopped as at a stop: a process with a dead
  role is not left half-running, and the roles still alive finish their work in order.
- A task that raises is logged, one record with its name and its traceback, whenever it
  raises (while running or while being stopped); it never interrupts the stop of the others.
- Stopping goes stage by stage, in the order the stages were declared: the stage's stop event
  is set, its tasks are awaited to their end, its `after` hook runs, then the next stage.
- Every task runs in one `asyncio.TaskGroup`: none outlives `run`, and cancelling `run`
  cancels them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Role = Callable[[asyncio.Event], Coroutine[Any, Any, object]]
"""A task's body: it runs until the event (its stage's stop) is set."""


@dataclass
class Stage:
    """Tasks stopped together: one stop event for all of them, then the `after` hook."""

    name: str
    after: Callable[[], Awaitable[None]] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Spec:
    name: str
    stage: Stage
    body: Role
    watched: bool


class Supervisor:
    """Declare stages and named tasks, then `run` them; `task(name)` finds a running one."""

    def __init__(self) -> None:
        self._stages: dict[str, Stage] = {}
        self._specs: dict[str, _Spec] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.failures: dict[str, Exception] = {}
        """What each task that raised raised, by its name."""

    def stage(self, name: str, *, after: Callable[[], Awaitable[None]] | None = None) -> Stage:
        """A new stage, stopped after every stage declared before it."""
        if name in self._stages:
            raise ValueError(f"a stage named {name!r} is already declared")
        stage = self._stages[name] = Stage(name, after)
        return stage

    def add(self, stage: Stage, name: str, body: Role, *, watched: bool = True) -> None:
        """Run `body(stage.stop)` as the task `name`. An unwatched task ending does not end
        the run (a helper such as the embedded server's restarter, not a role)."""
        if self._tasks:
            raise RuntimeError("tasks are added before the supervisor runs")
        if self._stages.get(stage.name) is not stage:
            raise ValueError(f"stage {stage.name!r} is not one of this supervisor's")
        if name in self._specs:
            raise ValueError(f"a task named {name!r} is already supervised")
        self._specs[name] = _Spec(name, stage, body, watched)
        stage.tasks.append(name)

    def task(self, name: str) -> asyncio.Task[None]:
        try:
            return self._tasks[name]
        except KeyError:
            raise KeyError(f"no task named {name!r} is running") from None

    async def run(
        self, stop: asyncio.Event, started: Callable[[], None] | None = None
    ) -> list[str]:
        """Start every task, call `started`, wait for `stop` or a watched task's end, then
        stop the stages in order. Returns the names of the tasks that ended the run (none
        when `stop` did)."""
        failure: Exception | None = None
        ended: list[str] = []
        async with asyncio.TaskGroup() as group:
            for spec in self._specs.values():
                self._tasks[spec.name] = group.create_task(self._guarded(spec), name=spec.name)
            try:
                try:
                    if started is not None:
                        started()
                    ended = await self._first_end(stop)
                finally:
                    await self._stop_stages()
            except Exception as exc:  # noqa: BLE001 (raised below as itself, not in a group)
                failure = exc
        if failure is not None:
            raise failure
        return ended

    async def _guarded(self, spec: _Spec) -> None:
        try:
            await spec.body(spec.stage.stop)
        except Exception as exc:  # logged by name, with its traceback; the others stop in order
            self.failures[spec.name] = exc
            log.error("role %s stopped: %r", spec.name, exc, exc_info=exc)

    async def _first_end(self, stop: asyncio.Event) -> list[str]:
        watched = [self._tasks[s.name] for s in self._specs.values() if s.watched]
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*watched, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        return [t.get_name() for t in watched if t in done]

    async def _stop_stages(self) -> None:
        for stage in self._stages.values():
            stage.stop.set()
            await asyncio.gather(*(self._tasks[n] for n in stage.tasks), return_exceptions=True)
            if stage.after is not None:
                await stage.after()


def exit_status(ended: Sequence[str]) -> int:
    """The process's exit status after `Supervisor.run` returned `ended`: 0 when the process's
    stop ended the run, 1 when a task did (it raised, or returned by itself). A role has no
    end of its own, so the orchestrator is told it failed and restarts it."""
    return 1 if ended else 0


SLOW_SHUTDOWN = 20.0
"""Seconds after a stop request at which a role still running names what it waits for (a
grace period is usually 30 s: the names are logged before the SIGKILL, not lost with it)."""


async def name_slow_shutdown(stop: asyncio.Event, after: float = SLOW_SHUTDOWN) -> None:
    """Once `stop` is set and `after` seconds have passed, log one line per task still
    pending, with the line it is waiting on; a shutdown that hangs then says where."""
    await stop.wait()
    await asyncio.sleep(after)
    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    log.error("still stopping after %g s: %d tasks pending", after, len(pending))
    for task in pending:
        stack = task.get_stack()
        where = (
            f"{stack[-1].f_code.co_filename}:{stack[-1].f_lineno} in {stack[-1].f_code.co_name}"
            if stack
            else "unknown"
        )
        log.error("  pending: %s at %s", task.get_name(), where)
