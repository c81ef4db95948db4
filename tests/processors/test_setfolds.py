"""The sink's two ways of folding a metric table give the same rows: the set-based SQL of
processors/setfolds.py and, for a table without one, the Python fold of its metrics written
with the table's upsert (real PostgreSQL)."""

from __future__ import annotations

import pytest

from metre.processors import setfolds as setfolds
from metre.processors import sink as sink
from metre.processors.metrics import TABLES, folds_of
from metre.processors.store import PgStore
from testkit.dump import differences, dump
from tests.processors.test_commutativity import _events
from tests.processors.test_retraction import fresh  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def test_every_set_fold_is_of_a_metric_table() -> None:
    assert setfolds.FOLDS.keys() <= TABLES.keys()
    for name in setfolds.FOLDS:
        sql = setfolds.fold_sql(name)
        assert sql.startswith(f"INSERT INTO {name} AS m (")
        assert "ON CONFLICT (" in sql


async def test_python_folded_tables_equal_the_set_based_ones(
    store: PgStore,
    fresh: PgStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # author_totals and file_stats have extremes (least/greatest columns), merges' tables
    # come from the merge files: each kind of fold is checked.
    python = {"author_totals", "file_stats", "file_merge_lines", "language_merge_lines"}
    ids = [(await s.add_repo("https://e.org/a.git", None)).id for s in (store, fresh)]
    ids += [(await s.add_repo("https://e.org/b.git", None)).id for s in (store, fresh)]
    assert ids[0] == ids[1]
    assert ids[2] == ids[3]
    events = _events((ids[0], ids[2]), 300, seed=7)
    assert any(e.merge_files for e in events)
    await fresh.apply(events)
    monkeypatch.setattr(
        setfolds, "FOLDS", {k: v for k, v in setfolds.FOLDS.items() if k not in python}
    )
    monkeypatch.setattr(sink, "_PYTHON_FOLDED", frozenset(python))
    monkeypatch.setattr(sink, "_PYTHON_FOLDS", folds_of(python))
    for i in range(0, len(events), 70):  # batches that overlap: some commits come twice
        await store.apply(events[max(0, i - 10) : i + 70])
    got, want = await dump(store._dsn), await dump(fresh._dsn)
    assert differences(got, want) == {}
