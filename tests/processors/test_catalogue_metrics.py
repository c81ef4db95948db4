"""The pure parts of the catalogue metrics: nearest-rank percentiles, histogram bins,
contributor series, punch card cells, table specs. No database, no event loop."""

from __future__ import annotations

import math
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metre.contracts.events import FileChange
from metre.processors.metrics import TABLES, total
from metre.processors.metrics.catalogue import catalogue, metrics_of_tables
from metre.processors.metrics.commit_size import bin_of, commit_size, histogram, nearest_rank
from metre.processors.metrics.contributors import series
from metre.processors.metrics.languages import language, languages
from metre.processors.metrics.punchcard import punchcard
from tests.processors.factories import commit_events, event, person


def test_nearest_rank_by_hand() -> None:
    d = {15: 1, 20: 1, 35: 1, 40: 1, 50: 1}  # the textbook example
    assert [nearest_rank(d, p) for p in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    assert nearest_rank({3: 1}, 99) == 3
    assert nearest_rank({}, 50) is None
    assert nearest_rank({0: 0}, 50) is None
    assert nearest_rank({1: 99, 1000: 1}, 99) == 1
    assert nearest_rank({1: 99, 1000: 1}, 99.5) == 1000


@given(st.lists(st.integers(0, 50), min_size=1, max_size=60), st.integers(1, 100))
def test_nearest_rank_is_the_definition(values: list[int], p: int) -> None:
    dist: dict[int, int] = {}
    for v in values:
        dist[v] = dist.get(v, 0) + 1
    got = nearest_rank(dist, p)
    assert got == sorted(values)[math.ceil(p * len(values) / 100) - 1]
    assert sum(v <= got for v in values) * 100 >= p * len(values)
    assert sum(v < got for v in values) * 100 < p * len(values)


def test_histogram_bins() -> None:
    assert [bin_of(v) for v in (0, 1, 2, 3, 4, 7, 8, 1023, 1024)] == [
        (0, 0), (1, 1), (2, 3), (2, 3), (4, 7), (4, 7), (8, 15), (512, 1023), (1024, 2047)
    ]  # fmt: skip
    assert histogram({}) == []
    assert histogram({5: 2, 0: 1}) == [
        {"min": 0, "max": 0, "commits": 1},
        {"min": 1, "max": 1, "commits": 0},
        {"min": 2, "max": 3, "commits": 0},
        {"min": 4, "max": 7, "commits": 2},
    ]


def test_contributor_series_by_hand() -> None:
    days = [
        ("a", date(2024, 1, 1)), ("a", date(2024, 1, 3)), ("a", date(2024, 1, 9)),
        ("b", date(2024, 1, 3)), ("b", date(2024, 1, 3)), ("c", date(2024, 1, 9)),
    ]  # fmt: skip
    assert series(days, "day", gap_days=5) == [
        {"period": "2024-01-01", "active": 1, "new": 1, "returning": 0, "cumulative": 1},
        {"period": "2024-01-03", "active": 2, "new": 1, "returning": 0, "cumulative": 2},
        # a: 9 - 3 = 6 > 5 days since the previous commit day: a return
        {"period": "2024-01-09", "active": 2, "new": 1, "returning": 1, "cumulative": 3},
    ]
    assert series(days, "day", gap_days=6)[2]["returning"] == 0
    assert series(days, "month", gap_days=1) == [
        {"period": "2024-01-01", "active": 3, "new": 3, "returning": 1, "cumulative": 3}
    ]
    with pytest.raises(ValueError, match="gap_days"):
        series(days, "day", -1)
    with pytest.raises(ValueError, match="granularity"):
        series(days, "year")


def test_punchcard_uses_the_authors_own_time() -> None:
    e = event(1, author=person(time="2024-03-03T23:30:00-02:00"))  # Sunday 23h local
    (d,) = punchcard(e)
    assert d.key == (1, 6, 23, 0)


def test_commit_size_keys_merges_apart_and_counts_binary_files() -> None:
    assert [(d.key, d.add) for d in commit_size(event(1, merge=True))] == [
        ((1, "files", 0, 2), {"commits": 1}),
        ((1, "lines", 0, 2), {"commits": 1}),
    ]
    e = event(2, files=(FileChange("a", 3, 4), FileChange("b.png", 0, 0, True)))
    assert [(d.key, d.add) for d in commit_size(e)] == [
        ((1, "files", 2, 0), {"commits": 1}),
        ((1, "lines", 7, 0), {"commits": 1}),
    ]
    empty = event(3, files=())
    assert [d.key for d in commit_size(empty)] == [(1, "files", 0, 1), (1, "lines", 0, 1)]


def test_languages_from_file_names() -> None:
    assert language("src/x.py") == "Python"
    assert language("a/b/Makefile") == "Makefile"
    assert language("no-such-extension.zzzz") == "Other"
    e = event(3, files=(FileChange("a.py", 2, 1), FileChange("b.py", 1, 0),
                        FileChange("c.png", 0, 0, True)))  # fmt: skip
    assert [(d.key, d.add) for d in languages(e)] == [
        (
            (1, "Python"),
            {
                "changes": 2,
                "added": 3,
                "removed": 1,
                "binary_changes": 0,
                "text_bytes": 0,
                "blob_unknown": 2,  # events without blob measures: unknown
            },
        )
    ]


@given(st.lists(commit_events(), max_size=30))
def test_every_delta_has_a_table_spec_that_can_write_it(events: list[object]) -> None:
    for d in total(events):  # type: ignore[arg-type]
        spec = TABLES[d.table]
        row = spec.row(d)
        assert len(row) == len(spec.columns)
        assert row[: len(spec.key)] == d.key


def test_catalogue_entries_read_existing_tables() -> None:
    for entry in catalogue().values():
        # Metric tables, or the facts for what is computed on read (coupling, releases).
        facts = {"file_changes", "commits", "release_tags"}
        assert set(entry.tables) <= set(TABLES) | facts, entry.name
    assert "punchcard" in metrics_of_tables({"punchcard"})
    assert metrics_of_tables(set()) == []


def test_linguist_kinds_from_paths() -> None:
    from metre.processors.metrics.linguist import classify

    assert classify("db/schema.sql").language == "SQL"  # Pygments said Transact-SQL
    assert classify("lib/defs.inc").language != "POVRay"
    assert classify("uv.lock").skipped
    assert not classify("uv.lock").counted
    assert classify("go.sum").lock
    assert classify("Cargo.lock").skipped
    assert classify("vendor/x.js").vendored
    assert not classify("vendor/x.js").counted
    assert classify("docs/guide.md").documentation
    assert not classify("docs/guide.md").skipped
    assert classify("src/a.py").counted
    assert not classify("src/a.py").skipped
    assert not classify("config.yaml").counted  # data
    assert classify("web/index.html").counted  # markup
