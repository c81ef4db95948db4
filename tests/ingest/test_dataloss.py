"""The pure decision of data loss on the bus (ingest/dataloss.py): every kind, and no false
alarm on the test broker's end offsets (the last batch's base offset + 1)."""

from __future__ import annotations

from metre.contracts.bus import partition_for
from metre.contracts.events import partition_key
from metre.ingest.dataloss import Loss, Mark, Observed, affected, compare, next_marks

T = "m.commits"


def marks(**over: object) -> dict[int, Mark]:
    base: dict[str, object] = {"cluster_id": "c1", "partitions": 2, "end_seen": 10, "produced": 49}
    base.update(over)
    return {p: Mark(p, **base) for p in (0, 1)}  # type: ignore[arg-type]


def test_nothing_known_or_nothing_lost_is_no_loss() -> None:
    assert compare(T, {}, Observed("c1", None)) == []
    # The broker answers an end offset of 10 for 50 records in batches: not a loss.
    assert compare(T, marks(), Observed("c1", {0: (0, 10), 1: (0, 12)})) == []
    # New records acknowledged above what was acknowledged before.
    assert compare(T, marks(), Observed("c1", {0: (0, 10), 1: (0, 10)}, {0: (50, 60)})) == []


def test_cluster_id_changed() -> None:
    [loss] = compare(T, marks(), Observed("c2", {0: (0, 50), 1: (0, 50)}))
    assert (loss.kind, loss.partitions) == ("cluster_changed", (0, 1))
    assert "c2" in loss.detail


def test_topic_missing_only_if_it_held_something() -> None:
    [loss] = compare(T, marks(), Observed("c1", None))
    assert loss.kind == "topic_missing"
    empty = marks(end_seen=0, produced=-1)
    assert compare(T, empty, Observed("c1", None)) == []


def test_truncated_by_end_offset_by_a_rewound_produce_and_by_a_lost_partition() -> None:
    [loss] = compare(T, marks(), Observed("c1", {0: (0, 3), 1: (0, 10)}))
    assert (loss.kind, loss.partitions) == ("truncated", (0,))
    # A restart without storage: offset 0 is acknowledged to the poller again, while the
    # broker's end offset (1: one batch) says nothing.
    again = Observed("c1", {0: (0, 1), 1: (0, 1)}, {1: (0, 2)}, rewound={1: 0})
    [loss] = compare(T, marks(end_seen=1), again)
    assert (loss.kind, loss.partitions) == ("truncated", (1,))
    # Another role recorded that loss first and reset the mark: not recorded twice.
    assert compare(T, marks(end_seen=1, produced=-1), again) == []
    # Acknowledgements of two pollers recorded in either order are not a loss.
    late = Observed("c1", {0: (0, 1), 1: (0, 1)}, {1: (10, 20)})
    assert compare(T, marks(end_seen=1), late) == []
    [loss] = compare(T, marks(), Observed("c1", {0: (0, 10)}))
    assert (loss.kind, loss.partitions) == ("truncated", (1,))


def test_committed_offsets_out_of_range() -> None:
    now = Observed("c1", {0: (5, 10), 1: (0, 10)}, committed={0: 3, 1: 50})
    [loss] = compare(T, marks(), now)
    assert loss.kind == "offset_out_of_range"
    assert loss.partitions == (0,)  # 1: 50 = produced 49 + 1, the log had it
    now = Observed("c1", {0: (0, 10), 1: (0, 10)}, committed={1: 80})
    [loss] = compare(T, marks(), now)
    assert loss.partitions == (1,)
    fetched = Observed("c1", {0: (0, 10), 1: (0, 10)}, committed={1: 80}, fetched={1: 79})
    assert compare(T, marks(), fetched) == []  # this member read offset 79: it existed


def test_next_marks_raise_and_reset() -> None:
    now = Observed("c1", {0: (0, 12), 1: (0, 3)}, {0: (50, 70)})
    [loss] = compare(T, marks(), now)
    new = next_marks(marks(), now, [loss])
    assert new[0] == Mark(0, "c1", 2, 12, 70)  # raised
    assert new[1] == Mark(1, "c1", 2, 3, -1)  # reset: the next loss counts from here
    assert compare(T, new, Observed("c1", {0: (0, 12), 1: (0, 3)})) == []


def test_affected_repositories_are_those_of_the_lost_partitions() -> None:
    repos = range(1, 40)
    loss = Loss("truncated", T, (1,), "", 4)
    got = affected(repos, loss)
    assert got == [r for r in repos if partition_for(partition_key(r), 4) == 1]
    assert 0 < len(got) < len(repos)
