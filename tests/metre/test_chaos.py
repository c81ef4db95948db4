"""The chaos suite, reduced for CI: distributed roles over the real broker and PostgreSQL
backfill a generated history while every kind of fault is injected twice (SIGKILLed pollers,
processors and API, broker and PostgreSQL restarts, duplicated and reordered events, a consumer
joining mid-stream, SIGTERMed processors, poison records); once settled, every fact and metric
table equals a fault-free run, nothing is lost or double-counted, the API equals git, and every
poison record the broker still held is a dead letter, once.

The full form is a command: `python -m bench.chaos --commits 5000 --faults 60`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.chaos import KINDS, PgServer, run_chaos
from tests.fixtures.broker import Broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_chaos_loses_and_double_counts_nothing(
    tmp_path: Path,
    pg_dsn: str,
    kafka_broker: Broker,
    history_factory: Callable[..., Path],
) -> None:
    repo = history_factory(commits=2000, seed=3)
    kafka_broker.start()
    try:
        report = await run_chaos(
            repo,
            kafka_broker,
            await PgServer.of(pg_dsn),
            tmp_path / "chaos",
            faults=2 * len(KINDS),
            seed=3,
            settle_timeout=120.0,
        )
    finally:
        kafka_broker.start()  # the session's broker stays up for the tests after this one
    print(report.text())
    assert report.faults == {kind: 2 for kind in KINDS}
    assert report.mid_ingest > 0, "no fault landed during the backfill"
    assert report.table_differences == {}
    assert (report.lost, report.double_counted) == (0, 0)
    assert report.crashes == []
    assert report.sigterm_exits
    assert all(code == 0 for _, code in report.sigterm_exits)
    # Every poison record is stored once as a dead letter, except those a broker restart
    # emptied from the topic before anyone read them; all of the last lifetime's are stored.
    assert report.stray_dead_letters == 0
    assert report.poison_unstored == 0
    assert report.dead_letters == report.poison - report.poison_lost_in_restarts
