"""Bounded logs while a dependency is away (no I/O but the logger it is given).

Why: a role retries a dependency that is away many times a second, and a line per attempt
would bury everything else in the log. So every role says it three ways only: one line when the
dependency goes away, one summary every `every` seconds while it stays away (attempts so far,
the next retry), and one line when it is back. `Throttle` does the same for the lines a client
library logs on its own (aiokafka logs each failed connection and each refused commit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SUMMARY_EVERY = 30.0
"""Seconds between two summaries of one outage (METRE_OUTAGE_SUMMARY_INTERVAL)."""


def configure(every: float) -> None:
    """Set the summary interval of every outage and throttle made after this (role start)."""
    global SUMMARY_EVERY
    SUMMARY_EVERY = float(every)


@dataclass
class Outage:
    """One dependency as one user of it sees it. Call `failed` after each failed attempt and
    `ok` after each success; each logs only when the state changes or a summary is due."""

    what: str
    log: logging.Logger
    every: float | None = None
    clock: Callable[[], float] = time.monotonic
    attempts: int = 0
    since: float | None = None
    _summary_at: float = 0.0
    _last_error: str = field(default="", repr=False)

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException | str, retry_in: float | None = None) -> None:
        now = self.clock()
        self.attempts += 1
        self._last_error = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
        every = SUMMARY_EVERY if self.every is None else self.every
        retry = "" if retry_in is None else f"; next retry in {retry_in:.1f} s"
        if self.since is None:
            self.since = now
            self._summary_at = now + every
            again = "" if retry_in is None else f", retrying in {retry_in:.1f} s"
            self.log.warning("%s unavailable%s: %s", self.what, again, self._last_error)
        elif now >= self._summary_at:
            self._summary_at = now + every
            self.log.warning(
                "%s still unavailable after %.0f s and %d attempts (last: %s)%s",
                self.what, now - self.since, self.attempts, self._last_error, retry,
            )  # fmt: skip

    def ok(self) -> None:
        if self.since is not None:
            self.log.warning(
                "%s is back after %.1f s and %d failed attempts",
                self.what, self.clock() - self.since, self.attempts,
            )  # fmt: skip
        self.since = None
        self.attempts = 0


class Throttle(logging.Filter):
    """Lets the first record of each message template through, then at most one per `every`
    seconds, which tells how many alike were dropped in between. WARNING and above only;
    lower levels pass untouched."""

    def __init__(self, every: float | None = None, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every = every
        self.clock = clock
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self.clock()
        every = SUMMARY_EVERY if self.every is None else self.every
        last = self._seen.get(key)
        if last is not None and now - last[0] < every:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} (and {last[1]} alike in the last {now - last[0]:.0f} s)"
        self._seen[key] = (now, 0)
        return True


def throttle_loggers(prefix: str, throttle: Throttle | None = None) -> Throttle:
    """Install one `Throttle` on the logger `prefix` and every logger under it known now
    (a logger's filters see only the records made on that logger, not its children's)."""
    throttle = throttle or Throttle()
    names = [prefix] + [n for n in logging.Logger.manager.loggerDict if n.startswith(prefix + ".")]
    for name in names:
        lg = logging.getLogger(name)
        if throttle not in lg.filters:
            lg.addFilter(throttle)
    return throttle
