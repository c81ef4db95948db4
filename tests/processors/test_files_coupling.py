"""Per-file and ownership derivations, and the coupling degree: pure, no database, no loop."""

from __future__ import annotations

import math
from datetime import UTC
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metre.contracts.events import BlobDelta, CommitEvent, FileChange
from metre.processors.metrics import Delta, merge, negate
from metre.processors.metrics.coupling import degree
from metre.processors.metrics.files import files
from metre.processors.metrics.ownership import FileAuthor, ownership
from tests.processors.factories import commit_events, event, person

_changes = st.lists(
    st.builds(
        FileChange,
        path=st.sampled_from(["a", "b/c.py", "d.bin", "e"]),
        added=st.integers(0, 50),
        removed=st.integers(0, 50),
        binary=st.booleans(),
        change=st.sampled_from(["A", "D", "M", "T"]),
    ),
    max_size=4,
    unique_by=lambda f: f.path,
).map(tuple)


@st.composite
def file_events(draw: st.DrawFn) -> CommitEvent:
    e = draw(commit_events())
    files_ = () if e.is_merge else draw(_changes)
    return CommitEvent(e.repo_id, e.sha, e.parents, e.author, e.committer, e.summary, files_)


def rows(events: list[CommitEvent]) -> dict[tuple[str, Any], dict[str, int]]:
    ds = merge(d for e in events for m in (files,) for d in m(e))
    return {(d.table, d.key): dict(d.add) for d in ds if any(d.add.values())}


@given(st.lists(file_events(), max_size=25), st.randoms(use_true_random=False))
def test_file_rows_commute(events: list[CommitEvent], rnd: Any) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert rows(shuffled) == rows(events)


@given(st.lists(file_events(), max_size=25), st.data())
def test_retraction_restores(events: list[CommitEvent], data: st.DataObject) -> None:
    events = list(dict.fromkeys(events))  # the store applies an event once
    gone = data.draw(st.lists(st.sampled_from(events), unique=True) if events else st.just([]))
    kept = [e for e in events if e not in gone]
    everything = [d for e in events for m in (files,) for d in m(e)]
    undo = [negate(d) for e in gone for m in (files,) for d in m(e)]
    merged = merge([*everything, *undo])
    got = {(d.table, d.key): dict(d.add) for d in merged if any(d.add.values())}
    assert got == rows(kept)


def test_file_rows_of_one_commit() -> None:
    e = event(
        1,
        author=person(email="Ada@X.org", time="2024-03-04T23:30:00-05:00"),
        files=(
            FileChange("new.c", 5, 0, change="A", blob=BlobDelta(40, 0, 40, 4)),
            FileChange("img", 0, 0, binary=True),
        ),
    )
    got = {(d.table, d.key): d for d in files(e)}
    s = got[("file_stats", (1, "new.c"))]
    assert s.add == {
        "commits": 1,
        "added": 5,
        "removed": 0,
        "presence": 1,
        "binary_changes": 0,
        "blob_bytes": 40,
        "blob_binary": 0,
        "blob_text_bytes": 40,
        "blob_unknown": 0,
        "blob_code": 4,
        "code_unknown": 0,
    }
    assert got[("file_stats", (1, "img"))].add["blob_unknown"] == 1  # no measures: unknown
    assert got[("file_stats", (1, "img"))].add["code_unknown"] == 1
    assert s.greatest == {"last": (e.author.time.astimezone(UTC), False)}
    assert got[("file_stats", (1, "img"))].add["binary_changes"] == 1
    assert got[("file_authors", (1, "new.c", "ada@x.org"))].add["created"] == 1
    assert got[("file_authors", (1, "img", "ada@x.org"))].add["created"] == 0
    assert {t for t, _ in got} == {"file_stats", "file_authors"}


def test_deletion_makes_presence_zero() -> None:
    a = event(1, files=(FileChange("f", 2, 0, change="A"),))
    d = event(2, files=(FileChange("f", 0, 2, change="D"),))
    (stats,) = [x for x in merge([*files(a), *files(d)]) if x.table == "file_stats"]
    assert stats.add["presence"] == 0
    assert stats.add["added"] - stats.add["removed"] == 0


def test_merges_and_empty_commits_write_nothing() -> None:
    assert list(files(event(1, merge=True))) == []


def test_degree() -> None:
    assert degree(2, 2, 2) == 1.0
    assert degree(1, 1, 3) == 0.5


def doa(fa: int, dl: int, ac: int) -> float:
    return 3.293 + 1.098 * fa + 0.164 * dl - 0.321 * math.log(1 + ac)


def test_ownership_worked_example() -> None:
    # main.c: ada created it (1 commit), bob 10 commits -> both authors (see kernel tests).
    # util.c: ada created, 40 commits; cy 1 commit -> ada only.
    # gone.c is not counted (absent at head); ghost has no commits (retracted).
    rows_ = [
        FileAuthor("main.c", "ada@x", 1, 1),
        FileAuthor("main.c", "bob@x", 10, 0),
        FileAuthor("util.c", "ada@x", 40, 1),
        FileAuthor("util.c", "cy@x", 1, 0),
        FileAuthor("gone.c", "cy@x", 50, 1),
        FileAuthor("util.c", "ghost@x", 0, 0),
    ]
    got = ownership(rows_, ["main.c", "util.c", "lonely.txt"])
    assert set(got.files) == {"main.c", "util.c", "lonely.txt"}
    assert [e for e, _ in got.files["main.c"]] == ["bob@x", "ada@x"]
    assert got.files["main.c"][1][1] == pytest.approx(doa(1, 1, 10), abs=1e-12)
    ((who, value),) = got.files["util.c"]
    assert who == "ada@x"
    assert value == pytest.approx(doa(1, 40, 1), abs=1e-12)
    assert got.files["lonely.txt"] == []  # no commit rows: no author
    # ada authors 2 files, bob 1. Remove ada: util.c and lonely.txt orphaned (2 of 3 > half).
    assert got.removed == [("ada@x", 2)]
    assert got.truck_factor == 1


def test_ownership_of_nothing() -> None:
    got = ownership([], [])
    assert got.files == {}
    assert got.truck_factor == 0


def _delta_keys(ds: list[Delta]) -> set[str]:
    return {d.table for d in ds}


def test_every_table_written_is_declared() -> None:
    from metre.processors.metrics import TABLES

    e = event(1, files=(FileChange("a", 1, 0), FileChange("b", 1, 1)))
    assert _delta_keys([*files(e)]) <= set(TABLES)
