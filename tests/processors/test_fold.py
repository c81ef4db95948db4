"""The store's hot path (`fold`: rows merged without Delta objects, per-module `FOLD`s) gives
exactly the rows of `total` (the spec): no database, no event loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metre.contracts.events import BlobDelta, CommitEvent, FileChange, MergeFile, Person
from metre.processors.metrics import FOLDS, TABLES, Rows, fold, total
from metre.processors.metrics import files as files_module
from tests.processors.factories import sha

_PATHS = ["a", "b/c.py", "d.bin", "Zeta.md", "zeta.md", "é.rs", "李/x.c", "caf\\xe9.rs", "a b"]
# Few distinct instants, so ties between extremes (same time, other name or binary) happen.
_times = st.builds(
    lambda s, m: datetime.fromtimestamp(1_600_000_000 + s * 3600, timezone(timedelta(minutes=m))),
    st.integers(0, 3),
    st.sampled_from([0, -420, 330]),
)
_people = st.builds(
    Person,
    name=st.sampled_from(["Ada", "ada", "Bob", "Zoë"]),
    email=st.sampled_from(["ada@x.org", "ADA@x.org", "bob@y.org"]),
    time=_times,
)
_blobs = st.none() | st.builds(
    BlobDelta,
    bytes=st.integers(-99, 99),
    binary=st.integers(-1, 1),
    text_bytes=st.integers(-99, 99),
    code=st.none() | st.integers(-99, 99),
)
_files = st.lists(
    st.builds(
        FileChange,
        path=st.sampled_from(_PATHS),
        added=st.integers(0, 9),
        removed=st.integers(0, 9),
        binary=st.booleans(),
        change=st.sampled_from(["A", "M", "D"]),
        blob=_blobs,
    ),
    max_size=8,
).map(tuple)

_merge_files = st.lists(
    st.builds(
        MergeFile,
        path=st.sampled_from(_PATHS),
        lines=st.integers(-9, 9),
        presence=st.integers(-1, 1),
        blob=_blobs,
    ),
    max_size=3,
    unique_by=lambda m: m.path,
).map(tuple)


@st.composite
def _events(draw: st.DrawFn) -> CommitEvent:
    n = draw(st.integers(0, 1000))
    merge = draw(st.booleans())
    return CommitEvent(
        repo_id=draw(st.sampled_from([1, 2])),
        sha=sha(n),
        parents=(sha(f"p{n}"), sha(f"q{n}")) if merge else (sha(f"p{n}"),),
        author=draw(_people),
        committer=draw(_people),
        summary="s",
        files=() if merge else draw(_files),
        merge_files=draw(_merge_files) if merge else (),
    )


def _spec_rows(events: list[CommitEvent]) -> dict[str, dict[Any, tuple[Any, ...]]]:
    out: dict[str, dict[Any, tuple[Any, ...]]] = {}
    for d in total(events):
        spec = TABLES[d.table]
        out.setdefault(d.table, {})[d.key] = spec.row(d)[len(spec.key) :]
    return out


def _fold_rows(rows: Rows) -> dict[str, dict[Any, tuple[Any, ...]]]:
    out: dict[str, dict[Any, tuple[Any, ...]]] = {}
    for name, table in rows.items():
        arrays = TABLES[name].rows_arrays(table)
        n = len(TABLES[name].key)
        out[name] = {tuple(r[:n]): tuple(r[n:]) for r in zip(*arrays, strict=True)}
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(_events(), max_size=30))
def test_fold_equals_total(events: list[CommitEvent]) -> None:
    assert _fold_rows(fold(events)) == _spec_rows(events)


@given(st.lists(_events(), max_size=30))
def test_rows_arrays_equal_arrays(events: list[CommitEvent]) -> None:
    merged = total(events)
    rows = fold(events)
    for name, spec in TABLES.items():
        want = spec.arrays([d for d in merged if d.table == name])
        got = spec.rows_arrays(rows.get(name, {}))
        assert sorted(zip(*got, strict=True)) == sorted(zip(*want, strict=True))


def test_hot_modules_have_their_own_fold() -> None:
    assert files_module.fold in FOLDS


def test_a_wrong_fold_is_caught() -> None:
    """The comparison above can fail: a fold that keeps the earliest change instead of the
    latest differs from the spec."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    people = [Person("Ada", "ada@x.org", t0 + timedelta(hours=h)) for h in (2, 1)]
    events = [
        CommitEvent(1, sha(i), (sha("p"),), p, p, "s", (FileChange("a", 1, 0),))
        for i, p in enumerate(people)
    ]

    def wrong(e: CommitEvent, rows: Rows) -> None:
        files_module.fold(e, rows)
        r = rows[files_module.STATS][(1, "a")]
        r[-1] = min(r[-1], (e.author.time.astimezone(UTC), False))

    folds = tuple(wrong if f is files_module.fold else f for f in FOLDS)
    assert _fold_rows(fold(events)) == _spec_rows(events)
    with pytest.raises(AssertionError):
        assert _fold_rows(fold(events, folds)) == _spec_rows(events)
