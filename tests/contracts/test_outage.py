"""Bounded outage logs (metre/contracts/outage.py), with an injected clock."""

from __future__ import annotations

import logging

import pytest

from metre.contracts.outage import Outage, Throttle


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_one_line_down_a_summary_every_interval_one_line_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    o = Outage("the broker", logging.getLogger("t.outage"), every=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, "t.outage"):
        for _ in range(200):  # 25 s of attempts every 0.125 s
            o.failed(OSError("refused"), 0.125)
            clock.t += 0.125
        o.ok()
        o.ok()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines
    assert lines[0] == "the broker unavailable, retrying in 0.1 s: refused"
    assert "still unavailable after 10 s and 81 attempts (last: refused)" in lines[1]
    assert "next retry in 0.1 s" in lines[1]
    assert "still unavailable after 20 s and 161 attempts" in lines[2]
    assert lines[3] == "the broker is back after 25.0 s and 200 failed attempts"


def test_throttle_passes_the_first_and_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    lg = logging.getLogger("t.throttled")
    lg.addFilter(Throttle(every=5.0, clock=clock))
    with caplog.at_level(logging.INFO, "t.throttled"):
        for i in range(100):
            lg.error("Unable connect to node with id %d", 1)
            lg.info("an info line %d", i)  # below WARNING: untouched
            clock.t += 0.1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0] == "Unable connect to node with id 1"
    assert len(errors) == 2
    assert "and 50 alike in the last 5 s" in errors[1]
    assert sum(r.levelno == logging.INFO for r in caplog.records) == 100
