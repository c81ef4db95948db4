"""Data loss on the bus, decided from what was seen before and what the broker says now (pure).

The roles keep "bus marks" per topic partition (PostgreSQL, processors/busmarks.py): the
broker's cluster id, the highest end offset it reported and the highest offset it acknowledged
to a produce. The offsets of a Kafka log only grow, so any answer below a mark means records
are gone. What each kind means:

- `cluster_changed`: another cluster id answers at the bootstrap address (a new cluster, or
  one rebuilt from nothing): every partition of the topic is suspect.
- `topic_missing`: the topic is unknown to the broker (deleted, or a restart without storage).
- `truncated`: a partition's end offset is below its mark, a partition is gone, or one
  process was acknowledged the same offset twice (the log started again: `rewound`).
- `offset_out_of_range`: the group's committed offset is below the log start (retention or a
  deletion removed records nobody had read) or above every offset the log ever had.

Only lower bounds are compared: the test broker reports an end offset as the last batch's
base offset + 1, never more than the true end, so `end < end_seen` holds only after a loss, on
that broker and on Apache Kafka alike. Acknowledged offsets are compared only within the
process that received them (an offset is assigned once in a log that lost nothing); across
processes their order in time is unknown (two pollers' acknowledgements recorded in either
order), so there they only raise the marks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from metre.contracts.bus import partition_for
from metre.contracts.events import partition_key

KINDS = ("cluster_changed", "topic_missing", "truncated", "offset_out_of_range")


@dataclass(frozen=True, slots=True)
class Mark:
    """What was last seen of one partition."""

    partition: int
    cluster_id: str | None
    partitions: int
    """The topic's partition count when the mark was taken (repositories map to partitions)."""
    end_seen: int = 0
    produced: int = -1
    """Highest offset acknowledged to a produce (-1: none)."""


@dataclass(frozen=True, slots=True)
class Observed:
    """What the broker says now of one topic (and of the group reading it, if any)."""

    cluster_id: str | None
    bounds: Mapping[int, tuple[int, int]] | None
    """partition -> (log start, end offset); None: the topic is unknown to the broker."""
    produced: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    """partition -> (lowest, highest) offset acknowledged to this process since the last look."""
    committed: Mapping[int, int] = field(default_factory=dict)
    """partition -> the group's committed offset (only where it has one)."""
    fetched: Mapping[int, int] = field(default_factory=dict)
    """partition -> the highest offset this process fetched (a record that existed)."""
    rewound: Mapping[int, int] = field(default_factory=dict)
    """partition -> the lowest offset acknowledged twice to this process (the log restarted)."""


@dataclass(frozen=True, slots=True)
class Loss:
    kind: str
    topic: str
    partitions: tuple[int, ...]
    detail: str
    old_partitions: int
    """The topic's partition count the lost records were published under."""


def compare(topic: str, marks: Mapping[int, Mark], now: Observed) -> list[Loss]:
    """The losses that `now` proves against `marks` (empty: nothing is lost)."""
    if not marks:
        return []
    count = max(m.partitions for m in marks.values())
    every = tuple(sorted(marks))
    had_data = any(m.end_seen > 0 or m.produced >= 0 for m in marks.values())
    ids = {m.cluster_id for m in marks.values() if m.cluster_id is not None}
    if now.cluster_id is not None and ids and now.cluster_id not in ids:
        was = ", ".join(sorted(ids))
        detail = f"the broker's cluster id is {now.cluster_id!r}, was {was!r}"
        return [Loss("cluster_changed", topic, every, detail, count)]
    if now.bounds is None:
        if not had_data:
            return []
        return [Loss("topic_missing", topic, every, "the broker does not know the topic", count)]
    losses: list[Loss] = []
    cut: list[int] = []
    reasons: list[str] = []
    for p, m in sorted(marks.items()):
        bound = now.bounds.get(p)
        if bound is None:
            if m.end_seen > 0 or m.produced >= 0:
                cut.append(p)
                reasons.append(f"{p}: gone")
            continue
        end = bound[1]
        if end < m.end_seen:
            cut.append(p)
            reasons.append(f"{p}: end offset {end} < {m.end_seen} seen")
        elif p in now.rewound and now.rewound[p] <= m.produced:
            # Not already recorded by another role (which would have reset the mark).
            cut.append(p)
            reasons.append(f"{p}: offset {now.rewound[p]} acknowledged twice")
    if cut:
        losses.append(Loss("truncated", topic, tuple(cut), "; ".join(reasons), count))
    out: list[int] = []
    reasons = []
    for p, offset in sorted(now.committed.items()):
        if p in cut or p not in now.bounds:
            continue
        start, end = now.bounds[p]
        highest = max(end, marks[p].end_seen if p in marks else 0)
        if p in marks and marks[p].produced >= 0:
            highest = max(highest, marks[p].produced + 1)
        highest = max(highest, now.produced.get(p, (0, -1))[1] + 1, now.fetched.get(p, -1) + 1)
        if offset < start:
            out.append(p)
            reasons.append(f"{p}: committed {offset} < log start {start}")
        elif offset > highest:
            out.append(p)
            reasons.append(f"{p}: committed {offset} > every offset the log had ({highest})")
    if out:
        losses.append(Loss("offset_out_of_range", topic, tuple(out), "; ".join(reasons), count))
    return losses


def next_marks(marks: Mapping[int, Mark], now: Observed, losses: Iterable[Loss]) -> dict[int, Mark]:
    """The marks to store after `now`: raised where nothing was lost, reset to what the broker
    holds now where something was (the next loss is measured from there)."""
    if now.bounds is None:
        return {} if list(losses) else dict(marks)
    lost = {p for loss in losses for p in loss.partitions}
    count = len(now.bounds)
    out: dict[int, Mark] = {}
    for p, (_, end) in now.bounds.items():
        old = marks.get(p)
        produced = now.produced.get(p, (None, -1))[1]
        if old is None or p in lost:
            out[p] = Mark(p, now.cluster_id, count, end, produced)
        else:
            out[p] = Mark(
                p,
                now.cluster_id or old.cluster_id,
                count,
                max(old.end_seen, end),
                max(old.produced, produced),
            )
    return out


def affected(repo_ids: Iterable[int], loss: Loss) -> list[int]:
    """The repositories whose events lived on the partitions `loss` names."""
    lost = set(loss.partitions)
    n = max(loss.old_partitions, 1)
    return sorted(r for r in repo_ids if partition_for(partition_key(r), n) in lost)
