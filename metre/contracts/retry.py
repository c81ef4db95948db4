"""The one retry policy of every metre role: what counts as transient, and capped exponential
backoff with jitter, so that every role waits for a dependency the same way.

The processor's transactions and offset commits, a role waiting for PostgreSQL or the broker to
come up, the poller's registry calls, and a failed repository's next poll all wait by
`Backoff`; the loops that retry an operation use `retry`. It is a contract (it imports nothing of
metre and no driver): a store or bus says which of its errors are transient with
`register_transient` (PostgreSQL's: metre.processors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from metre.contracts.bus import BusError
from metre.contracts.outage import Outage

T = TypeVar("T")

_TRANSIENT: list[type[BaseException]] = [OSError, TimeoutError]
"""Exception types that mean "try again later": the network's own, and what each store or bus
adds with `register_transient` when it is imported (this module knows no driver)."""


def register_transient(*types: type[BaseException]) -> None:
    """Count `types` (and their subclasses) as transient failures from now on."""
    for t in types:
        if t not in _TRANSIENT:
            _TRANSIENT.append(t)


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same operation again later may succeed.

    Looks through the exception's causes: a connection lost inside a transaction surfaces as
    the driver's InterfaceError ("connection is closed") raised while handling the real error.
    """
    if isinstance(exc, BusError):
        return exc.retriable
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, tuple(_TRANSIENT)):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def always(_: BaseException) -> bool:
    """Every failure is worth retrying (a registry that must never stop its loop)."""
    return True


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of base·2^attempt, capped at `cap`, each drawn uniformly from its upper half: the
    ceiling still grows exponentially and concurrent retriers spread out."""

    base: float
    cap: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry `attempt` (0-based)."""
        ceiling = min(self.cap, self.base * float(1 << min(max(attempt, 0), 60)))
        return ceiling * (rng or _RNG).uniform(0.5, 1.0)


_RNG = random.Random()  # noqa: S311 (jitter, not cryptography)

DEPENDENCY = Backoff(0.2, 5.0)
"""A role waiting for PostgreSQL or the broker, or a registry call of the poller."""


class RetryStopped(Exception):
    """`stop` was set while waiting to retry: the caller leaves quietly."""


async def retry(
    op: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    stop: asyncio.Event | None = None,
    retriable: Callable[[BaseException], bool] = is_transient,
    deadline: float | None = None,
    what: str = "operation",
    log: logging.Logger | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run `op` until it succeeds, waiting `backoff` between retriable failures.

    Other failures propagate, and so does a retriable one once the loop time passes
    `deadline`. While waiting, `stop` ends the loop with `RetryStopped`. Logs are bounded
    (metre/contracts/outage.py): one line when the first attempt fails, a summary every
    `outage.SUMMARY_EVERY` seconds, one line when an attempt succeeds again.
    """
    loop = asyncio.get_running_loop()
    attempt = 0
    outage = Outage(what, log or logging.getLogger(__name__))
    while True:
        try:
            result = await op()
        except Exception as exc:
            if not retriable(exc) or (deadline is not None and loop.time() >= deadline):
                raise
            delay = backoff.delay(attempt)
            attempt += 1
            if on_retry is not None:
                on_retry(exc)
            outage.failed(repr(exc), delay)
            if stop is None:
                await asyncio.sleep(delay)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                raise RetryStopped(f"stopped while waiting for {what}") from exc
            continue
        outage.ok()
        return result
