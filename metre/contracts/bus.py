"""The message bus contract (pure protocol) and `InMemoryBus`, its in-process implementation.

Semantics shared by every implementation, held by one conformance suite (tests/ingest/test_bus.py):
- a record's partition is a function of its key, so one key keeps its order;
- `publish` returns only once every record is stored (acknowledged);
- consumers of one group share the partitions; each record is delivered at least once;
- a consumer that stops without committing leaves its records to be delivered again;
- `commit` names the records that are done; committing a partition the consumer no longer owns
  raises `CommitFailed`, which is harmless because applying an event is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka.partitioner import murmur2

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Message:
    """What a producer sends: the bus chooses partition and offset."""

    key: bytes | None
    value: bytes
    headers: Headers = ()


class BusError(Exception):
    """A bus operation failed. `retriable` says whether trying again may succeed."""

    retriable: bool = True

    def __init__(self, *args: object, retriable: bool | None = None) -> None:
        super().__init__(*args)
        if retriable is not None:
            self.retriable = retriable


class CommitFailed(BusError):
    """Offsets were not committed (the partition moved to another consumer)."""

    retriable = False


class Consumer(Protocol):
    async def start(self) -> None: ...

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records` records in partition order; [] after `timeout` seconds."""
        ...

    async def commit(self, records: Sequence[Record]) -> None:
        """Mark these records (and everything before them in their partitions) done."""
        ...

    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member owns now; empty before the group is joined."""
        ...

    async def stop(self) -> None: ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create the topics that do not exist yet, with the configured partitions."""
        ...

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Send and wait until every message is acknowledged; raises `BusError` otherwise."""
        ...

    def consumer(self, topics: Sequence[str], group: str) -> Consumer: ...


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key`: murmur2 (aiokafka's, the
    hash its `DefaultPartitioner` and the Java client use), sign bit cleared; the in-process
    bus places keys where a broker would."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


TopicPartition = tuple[str, int]


class _Group:
    """A consumer group: its members in join order and its committed offsets."""

    def __init__(self) -> None:
        self.members: list[InMemoryConsumer] = []
        self.committed: dict[TopicPartition, int] = {}


class InMemoryBus:
    """An in-process bus with Kafka's semantics, for the embedded mode and for tests.

    Topics have `partitions` append-only logs; a keyed message goes to `partition_for(key)`
    (the same partition Kafka's default partitioner picks), keyless ones round-robin.
    Members of a group share partitions round-robin; every start or stop rebalances the group
    and each member restarts its partitions at the group's committed offset (earliest if none),
    as Kafka's eager rebalance does. Nothing survives the process: the logs live in memory.
    """

    def __init__(self, partitions: int = 8) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.partitions = partitions
        self._logs: dict[str, list[list[Record]]] = {}
        self._groups: dict[str, _Group] = {}
        self._changed = asyncio.Event()
        self._round_robin = 0
        self._running = False
        self._trimmed: dict[TopicPartition, int] = {}  # offset of the first record still held

    @property
    def running(self) -> bool:
        """Started and not stopped: publish and fetch work."""
        return self._running

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        """Stop the bus; its consumers leave their groups and see no more records."""
        self._running = False
        for group in self._groups.values():
            for member in list(group.members):
                await member.stop()
        self._notify()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics; groups already subscribed to one rebalance to take it on."""
        created = {t for t in topics if t not in self._logs}
        for topic in created:
            self._logs[topic] = [[] for _ in range(self.partitions)]
        if created:
            for group in self._groups.values():
                if any(created.intersection(m.topics) for m in group.members):
                    self._rebalance(group)
            self._notify()

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Append every message; all are stored when this returns (there is nothing to lose)."""
        if not self._running:
            raise BusError("the bus is not running", retriable=False)
        logs = self._logs.get(topic)
        if logs is None:
            raise BusError(f"unknown topic {topic!r}: call ensure_topics first", retriable=False)
        for message in messages:
            if message.key is None:
                partition = self._round_robin % self.partitions
                self._round_robin += 1
            else:
                partition = partition_for(message.key, self.partitions)
            log = logs[partition]
            offset = self._trimmed.get((topic, partition), 0) + len(log)
            log.append(
                Record(topic, partition, offset, message.key, message.value, message.headers)
            )
        if messages:
            self._notify()

    def consumer(self, topics: Sequence[str], group: str) -> InMemoryConsumer:
        return InMemoryConsumer(self, tuple(topics), group)

    def end_offsets(self, topic: str) -> dict[int, int]:
        """The next offset of each partition of `topic`."""
        return {
            p: self._trimmed.get((topic, p), 0) + len(log)
            for p, log in enumerate(self._logs.get(topic, ()))
        }

    def trim(self, *, unread: bool = False) -> int:
        """Forget records that every group known to the bus has committed; return how many.

        With `unread`, also forget the records of topics no group reads (in one process
        nothing can subscribe later: the dead letters of `metre up`).

        Memory is the embedded mode's only retention. A group counts once one of its members
        has started; one that starts later begins at the oldest record still held, as a Kafka
        consumer does after retention deleted the start of the log.
        """
        dropped = 0
        for topic, logs in self._logs.items():
            groups = [
                g
                for g in self._groups.values()
                if any(t == topic for t, _ in g.committed)
                or any(topic in m.topics for m in g.members)
            ]
            if not groups and not unread:
                continue
            for partition, log in enumerate(logs):
                tp = (topic, partition)
                base = self._trimmed.get(tp, 0)
                done = min(g.committed.get(tp, 0) for g in groups) if groups else base + len(log)
                if done > base:
                    del log[: done - base]
                    self._trimmed[tp] = done
                    dropped += done - base
        return dropped

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets in `topic`, for partitions that have one."""
        g = self._groups.get(group)
        if g is None:
            return {}
        return {p: o for (t, p), o in g.committed.items() if t == topic}

    # Internals used by InMemoryConsumer.

    def _notify(self) -> None:
        """Wake every waiting fetch; waiters then look at the state again."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _join(self, member: InMemoryConsumer) -> None:
        group = self._groups.setdefault(member.group, _Group())
        group.members.append(member)
        self._rebalance(group)
        self._notify()

    def _leave(self, member: InMemoryConsumer) -> None:
        group = self._groups.get(member.group)
        if group is not None and member in group.members:
            group.members.remove(member)
            self._rebalance(group)
        member._positions = {}
        self._notify()

    def _rebalance(self, group: _Group) -> None:
        """Deal every subscribed partition round-robin over the members that subscribe to it."""
        assignments: dict[int, list[TopicPartition]] = {id(m): [] for m in group.members}
        turn = 0
        for topic in sorted({t for m in group.members for t in m.topics}):
            eligible = [m for m in group.members if topic in m.topics]
            for partition in range(len(self._logs.get(topic, ()))):
                assignments[id(eligible[turn % len(eligible)])].append((topic, partition))
                turn += 1
        for member in group.members:
            member._positions = {tp: group.committed.get(tp, 0) for tp in assignments[id(member)]}

    def _read(self, tp: TopicPartition, offset: int, limit: int) -> list[Record]:
        topic, partition = tp
        start = max(offset - self._trimmed.get(tp, 0), 0)
        return self._logs[topic][partition][start : start + limit]

    def _commit(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        self._groups.setdefault(group, _Group()).committed.update(offsets)


class InMemoryConsumer:
    """One member of a consumer group of an `InMemoryBus`."""

    def __init__(self, bus: InMemoryBus, topics: tuple[str, ...], group: str) -> None:
        self.topics = topics
        self.group = group
        self._bus = bus
        self._positions: dict[TopicPartition, int] = {}
        self._started = False
        self._turn = 0

    def assignment(self) -> set[TopicPartition]:
        """The partitions this member owns now, as (topic, partition)."""
        return set(self._positions)

    async def start(self) -> None:
        if self._started:
            return
        if not self._bus._running:
            raise BusError("the bus is not running", retriable=False)
        self._started = True
        self._bus._join(self)

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records` records in (topic, partition, offset) order; [] on timeout.

        Partitions take turns being served first, so a busy one does not starve the others.
        """
        if not self._started:
            raise BusError("fetch on a consumer that is not started", retriable=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            changed = self._bus._changed
            records = self._take(max_records)
            remaining = deadline - loop.time()
            if records or not self._started or remaining <= 0:
                return records
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def _take(self, max_records: int) -> list[Record]:
        owned = sorted(self._positions)
        if not owned or max_records <= 0:
            return []
        self._turn = (self._turn + 1) % len(owned)
        taken: list[Record] = []
        for tp in owned[self._turn :] + owned[: self._turn]:
            batch = self._bus._read(tp, self._positions[tp], max_records - len(taken))
            if batch:
                self._positions[tp] = batch[-1].offset + 1
                taken.extend(batch)
            if len(taken) >= max_records:
                break
        taken.sort(key=lambda r: (r.topic, r.partition, r.offset))
        return taken

    async def commit(self, records: Sequence[Record]) -> None:
        """Commit the partitions still owned, then raise `CommitFailed` if any were not."""
        offsets = _next_offsets(records)
        owned = {tp: o for tp, o in offsets.items() if tp in self._positions}
        self._bus._commit(self.group, owned)
        lost = sorted(set(offsets) - set(owned))
        if lost:
            raise CommitFailed(f"partitions no longer assigned to this consumer: {lost}")

    async def lag(self) -> dict[TopicPartition, int]:
        """Per owned partition, the records not yet fetched (end offset minus position)."""
        ends: dict[TopicPartition, int] = {}
        for topic, _ in self._positions:
            if all(t != topic for t, _ in ends):
                ends.update(((topic, p), o) for p, o in self._bus.end_offsets(topic).items())
        return {tp: max(ends.get(tp, pos) - pos, 0) for tp, pos in self._positions.items()}

    async def stop(self) -> None:
        """Leave the group; what was fetched and not committed goes to the next owner."""
        if self._started:
            self._started = False
            self._bus._leave(self)


def _next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    """The offset to commit per partition: one past the highest record given."""
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = (r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    return offsets
