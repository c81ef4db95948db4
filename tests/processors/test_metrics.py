"""Metrics are pure, commutative folds: no database, no event loop."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from metre.contracts.events import CommitEvent
from metre.processors.metrics import Delta, deltas, merge, negate, total
from metre.processors.metrics.activity import activity
from metre.processors.metrics.authors import authors
from tests.processors.factories import commit_events, event, person

events_lists = st.lists(commit_events(), max_size=40)


def unique(events: Iterable[CommitEvent]) -> list[CommitEvent]:
    """What the store's dedup keeps: the first event of each (repo, sha)."""
    seen: dict[tuple[int, str], CommitEvent] = {}
    for e in events:
        seen.setdefault((e.repo_id, e.sha), e)
    return list(seen.values())


def counters(ds: Iterable[Delta]) -> dict[tuple[str, Any], dict[str, int]]:
    """Counters of non-empty rows (a fully retracted row equals no row)."""
    return {(d.table, d.key): dict(d.add) for d in ds if any(v != 0 for v in d.add.values())}


def direct(events: list[CommitEvent]) -> tuple[dict[Any, list[int]], dict[Any, list[Any]]]:
    """The metrics computed the obvious way, as the oracle."""
    days: dict[Any, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    people: dict[Any, list[Any]] = {}
    for e in events:
        # The commit kind (policy.py), said the obvious way: merge, empty non-merge, change.
        k = 2 if len(e.parents) > 1 else 0 if e.files else 1
        day = days[(e.repo_id, e.author.time.astimezone(UTC).date(), k)]
        day[0] += 1
        day[1] += len(e.parents) > 1
        day[2] += sum(f.added for f in e.files)
        day[3] += sum(f.removed for f in e.files)
        key = (e.repo_id, e.author.email.lower(), k)
        t = e.author.time
        p = people.setdefault(key, [0, 0, 0, t, t, e.author.name])
        p[0] += 1
        p[1] += sum(f.added for f in e.files)
        p[2] += sum(f.removed for f in e.files)
        p[3] = min(p[3], t)
        if (t, e.author.name) > (p[4], p[5]):
            p[4], p[5] = t, e.author.name
    return dict(days), people


@given(events_lists, st.randoms(use_true_random=False))
def test_order_does_not_matter(events: list[CommitEvent], rnd: Any) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert total(shuffled) == total(events)


@given(events_lists)
def test_totals_equal_a_direct_computation(events: list[CommitEvent]) -> None:
    days, people = direct(events)
    got = {(d.table, d.key): d for d in total(events)}
    assert {k for t, k in got if t == "activity_daily"} == set(days)
    for key, (commits, merges, added, removed) in days.items():
        d = got[("activity_daily", key)]
        assert dict(d.add) == {
            "commits": commits, "merges": merges, "added": added, "removed": removed
        }  # fmt: skip
    assert {k for t, k in got if t == "author_totals"} == set(people)
    for key, (commits, added, removed, first, last, name) in people.items():
        d = got[("author_totals", key)]
        assert dict(d.add) == {"commits": commits, "added": added, "removed": removed}
        assert d.least["first_commit_at"] == first
        assert d.greatest["latest"] == (last, name)


@given(events_lists, st.lists(st.integers(0, 39), max_size=10))
def test_duplicates_do_not_move_least_and_greatest(
    events: list[CommitEvent], dup: list[int]
) -> None:
    again = [events[i] for i in dup if i < len(events)]
    once = {(d.table, d.key): (d.least, d.greatest) for d in total(events)}
    twice = {(d.table, d.key): (d.least, d.greatest) for d in total(events + again)}
    assert once == twice


@given(events_lists, st.sets(st.integers(0, 39), max_size=10))
def test_retraction_restores_counters(events: list[CommitEvent], gone_idx: set[int]) -> None:
    events = unique(events)
    gone = [e for i, e in enumerate(events) if i in gone_idx]
    kept = [e for i, e in enumerate(events) if i not in gone_idx]
    retracted = merge([*deltas(events), *(negate(d) for d in deltas(gone))])
    assert counters(retracted) == counters(total(kept))


def test_activity_day_is_the_utc_author_day() -> None:
    e = event(1, author=person(time="2024-03-03T23:30:00-02:00"))
    (d,) = activity(e)
    assert d.key == (1, person(time="2024-03-04T01:30:00+00:00").time.date(), 0)
    assert d.add == {"commits": 1, "merges": 0, "added": 3, "removed": 1}


def test_merges_count_as_merges_with_no_lines() -> None:
    (d,) = activity(event(1, merge=True))
    assert d.add == {"commits": 1, "merges": 1, "added": 0, "removed": 0}


def test_authors_identity_is_the_lower_cased_email() -> None:
    a = event(1, author=person("Ada", "Ada@Example.org", "2024-01-01T00:00:00+00:00"))
    b = event(2, author=person("Ada L.", "ada@example.ORG", "2024-02-01T00:00:00+05:00"))
    (d,) = total([b, a], metrics=[authors])
    assert d.key == (1, "ada@example.org", 0)
    assert d.add == {"commits": 2, "added": 6, "removed": 2}
    assert d.greatest["latest"][1] == "Ada L."


def test_same_instant_names_break_ties_by_the_greatest_name() -> None:
    t = "2024-01-01T12:00:00+00:00"
    a = event(1, author=person("Alice", "a@x", t))
    b = event(2, author=person("Bob", "a@x", "2024-01-01T14:00:00+02:00"))
    for order in ([a, b], [b, a]):
        (d,) = total(order, metrics=[authors])
        assert d.greatest["latest"][1] == "Bob"
