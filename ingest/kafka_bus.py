"""`KafkaBus`: the Bus contract over Apache Kafka through aiokafka (does network I/O).

Delivery is at least once. The producer waits for every in-sync replica (acks="all") but is not
idempotent: exactly-once effects come from the processors' dedup on event ids, and the test
broker does not grant producer ids anyway. Consumers never auto-commit; `commit` names the
records that are done, so a rebalance or a crash only repeats work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    ConsumerStoppedError,
    IllegalGenerationError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
    for_code,
)
from aiokafka.protocol.group import HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest

from metre.contracts.bus import BusError, CommitFailed, Message, Record
from metre.ingest.dataloss import Observed

log = logging.getLogger(__name__)

_REBALANCED = (
    CommitFailedError,
    IllegalGenerationError,
    IllegalStateError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
"""What aiokafka raises when a commit races a rebalance: the partition may belong to another."""


def _bus_error(what: str, exc: BaseException) -> BusError:
    # aiokafka marks a client-side timeout as final, but a broker that is away now may be back
    # soon (a restart, a leader election): retrying is the caller's right answer.
    # The test broker answers a produce to a topic it lost in a restart with UnknownError
    # (-1), not UnknownTopicOrPartition: both are worth another try once the topic exists.
    retriable = isinstance(exc, (KafkaTimeoutError, UnknownError)) or bool(
        getattr(exc, "retriable", False)
    )
    return BusError(f"{what}: {str(exc) or type(exc).__name__}", retriable=retriable)


class KafkaBus:
    """Topics with `partitions` partitions (replication factor 1 unless given) on `bootstrap`.

    `session_timeout_ms` bounds how long a dead consumer keeps its partitions; heartbeats go
    every third of it. A keyed message lands where Kafka's default partitioner (murmur2) puts
    it, the same partition `metre.contracts.bus.partition_for` and `InMemoryBus` choose.
    """

    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        session_timeout_ms: int = 10_000,
        client_id: str = "metre",
        *,
        replication_factor: int = 1,
        request_timeout_ms: int = 30_000,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.session_timeout_ms = session_timeout_ms
        self.client_id = client_id
        self.replication_factor = replication_factor
        self.request_timeout_ms = request_timeout_ms
        self._producer: AIOKafkaProducer | None = None
        self._consumers: set[KafkaConsumer] = set()
        self._produced: dict[tuple[str, int], tuple[int, int]] = {}
        self._acked: dict[tuple[str, int], list[tuple[int, int]]] = {}
        self._rewound: dict[tuple[str, int], int] = {}
        self.loss_suspected = asyncio.Event()
        """Set when an offset is acknowledged twice to this process (the log started again):
        a watcher looks at the broker at once."""

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=False,
            request_timeout_ms=self.request_timeout_ms,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise _bus_error(f"cannot reach Kafka at {self.bootstrap}", exc) from exc
        self._producer = producer

    async def stop(self) -> None:
        """Stop the consumers this bus made, then flush and close the producer."""
        for consumer in list(self._consumers):
            await consumer.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create missing topics and return once the cluster's metadata lists all of them."""
        if not topics:
            return
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            request_timeout_ms=self.request_timeout_ms,
        )
        try:
            await admin.start()
            await self._create(admin, topics)
            await self._await_metadata(admin, topics)
        except KafkaError as exc:
            raise _bus_error(f"cannot create topics {list(topics)}", exc) from exc
        finally:
            await admin.close()

    async def _create(self, admin: AIOKafkaAdminClient, topics: Sequence[str]) -> None:
        new = [NewTopic(t, self.partitions, self.replication_factor) for t in topics]
        try:
            response = await admin.create_topics(new)
        except TopicAlreadyExistsError:
            return
        for topic, code, *rest in response.topic_errors:
            error = for_code(code)
            if code != 0 and error is not TopicAlreadyExistsError:
                raise error(f"creating {topic!r}: {rest[0] if rest else ''}")

    async def _await_metadata(self, admin: AIOKafkaAdminClient, topics: Sequence[str]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout_ms / 1000
        while True:
            described: list[dict[str, Any]] = await admin.describe_topics(list(topics))
            ready = {
                d["topic"] for d in described if d.get("error_code") == 0 and d.get("partitions")
            }
            missing = sorted(set(topics) - ready)
            if not missing:
                return
            if loop.time() > deadline:
                raise BusError(f"topics not in metadata after creation: {missing}")
            await asyncio.sleep(0.1)

    async def publish(self, topic: str, messages: Sequence[Message]) -> None:
        """Send every message, then wait for every acknowledgement; the first failure raises.

        A topic the broker does not know (a broker restarted without storage lost it) is
        created again with the configured partitions, and the messages are sent once more.
        """
        try:
            await self._publish(topic, messages)
        except BusError as exc:
            if not isinstance(exc.__cause__, (UnknownTopicOrPartitionError, UnknownError)):
                raise
            log.warning("topic %r is gone: creating it again", topic)
            await self.ensure_topics([topic])
            await self._publish(topic, messages)

    async def _publish(self, topic: str, messages: Sequence[Message]) -> None:
        producer = self._producer
        if producer is None:
            raise BusError("the bus is not started", retriable=False)
        deliveries: list[asyncio.Future[Any]] = []
        try:
            for m in messages:
                deliveries.append(
                    await producer.send(topic, m.value, key=m.key, headers=list(m.headers))
                )
        except KafkaError as exc:
            # Already queued sends still complete or fail on their own; nobody waits for them.
            for d in deliveries:
                d.add_done_callback(_consume_outcome)
            raise _bus_error(f"cannot send to {topic!r}", exc) from exc
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, KafkaError):
                raise _bus_error(f"{topic!r} did not acknowledge", outcome) from outcome
            if isinstance(outcome, BaseException):
                raise outcome
        self._note_acks(topic, outcomes)

    def _note_acks(self, topic: str, outcomes: Sequence[Any]) -> None:
        """Keep the lowest and highest acknowledged offset per partition for the bus marks, and
        notice an offset acknowledged twice to this process (the log started again)."""
        lows: dict[int, int] = {}
        highs: dict[int, int] = {}
        for meta in outcomes:
            p, o = getattr(meta, "partition", None), getattr(meta, "offset", None)
            if not isinstance(p, int) or not isinstance(o, int) or o < 0:
                continue
            lows[p] = min(lows.get(p, o), o)
            highs[p] = max(highs.get(p, o), o)
        for p, low in lows.items():
            tp = (topic, p)
            spans = self._acked.setdefault(tp, [])
            hit = next((s for s in spans if s[0] <= highs[p] and low <= s[1]), None)
            if hit is not None:
                self._rewound[tp] = min(self._rewound.get(tp, low), low)
                self.loss_suspected.set()
            _add_span(spans, low, highs[p])
            old = self._produced.get(tp)
            self._produced[tp] = (low, highs[p]) if old is None else (old[0], max(old[1], highs[p]))

    def take_produced(self, topic: str) -> dict[int, tuple[int, int]]:
        """(lowest, highest) offsets acknowledged per partition of `topic` since the last call."""
        taken = {p: v for (t, p), v in self._produced.items() if t == topic}
        for p in taken:
            del self._produced[(topic, p)]
        return taken

    def forget_acks(self, topic: str) -> None:
        """After a loss: offsets start again from what the broker holds now."""
        for tp in [tp for tp in self._acked if tp[0] == topic]:
            del self._acked[tp]
            self._rewound.pop(tp, None)

    async def observe(self, topic: str) -> Observed:
        """What the broker says now of `topic`: its cluster id and each partition's log start
        and end offset (None: no such topic).

        Lists every topic rather than asking for this one: the test broker creates a topic
        that a metadata request names."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-watch",
            request_timeout_ms=self.request_timeout_ms,
        )
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-watch",
            enable_auto_commit=False,
            request_timeout_ms=self.request_timeout_ms,
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            await reader.start()
            bounds: dict[int, tuple[int, int]] | None = None
            if topic in await reader.topics():
                tps = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
                starts = await reader.beginning_offsets(tps) if tps else {}
                ends = await reader.end_offsets(tps) if tps else {}
                bounds = {tp.partition: (starts[tp], ends[tp]) for tp in tps}
        except KafkaError as exc:
            raise _bus_error(f"cannot read the offsets of {topic!r}", exc) from exc
        finally:
            await reader.stop()
            await admin.close()
        cluster_id = cluster.get("cluster_id")
        rewound = {p: why for (t, p), why in self._rewound.items() if t == topic}
        return Observed(
            cluster_id if isinstance(cluster_id, str) else None,
            bounds,
            self.take_produced(topic),
            rewound=rewound,
        )

    def consumer(self, topics: Sequence[str], group: str) -> KafkaConsumer:
        return KafkaConsumer(self, tuple(topics), group)


async def _leave_if_stable(coordinator: Any) -> None:
    """Leave the group at once if it is stable at this member's generation; else let it expire.

    Replaces aiokafka's `GroupCoordinator._maybe_leave_group`, which runs after the coordinator
    stopped heartbeating and rejoining (final shutdown) or when the member idled past
    max_poll_interval, and always ends by resetting the generation. aiokafka leaves only from
    generation 1 (Apache Kafka's first), so on the test broker, whose first generation is 0, a
    stopped member kept its partitions until the session timeout. It also leaves during a
    rebalance, and on the test broker (Tansu 0.6.0) a LeaveGroup from the leader while the group
    is forming keeps the gone member as leader: every later join answers followers only and
    the group never syncs again (see docs/reliability.md). So: one Heartbeat at our generation
    first; NoError means the group is stable at that generation (Tansu: formed), and only then
    LeaveGroup. Otherwise (a rebalance under way, an unknown member, a broker away) nothing is
    sent and the coordinator evicts the member after the session timeout, which is correct on
    both brokers, only slower.
    """
    group, member, generation = coordinator.group_id, coordinator.member_id, coordinator.generation
    try:
        if member == JoinGroupRequest.UNKNOWN_MEMBER_ID or generation < 0:
            return
        if getattr(coordinator, "_group_instance_id", None) is not None:
            return  # a static member keeps its place across restarts: never leave
        beat = await coordinator._send_req(HeartbeatRequest(group, generation, member))
        if beat.error_code != 0:
            log.info(
                "not leaving group %s in a rebalance (heartbeat: %s): the session expires",
                group,
                for_code(beat.error_code).__name__,
            )
            return
        answer = await coordinator._send_req(LeaveGroupRequest(group, member))
        if answer.error_code == 0:
            log.info("left group %s (generation %d)", group, generation)
        else:
            log.warning("LeaveGroup for %s: %s", group, for_code(answer.error_code).__name__)
    except (KafkaError, OSError) as exc:  # best effort: the session expires all the same
        log.warning("could not leave group %s: %s", group, exc)
    finally:
        coordinator.reset_generation()


def _install_leave_policy(consumer: AIOKafkaConsumer) -> None:
    """Make `consumer` leave its group through `_leave_if_stable` (aiokafka's hook, if present).

    This patches aiokafka internals because no public API serves: aiokafka 0.14 has no option
    deciding whether or when `stop()` sends LeaveGroup (Java's `CloseOptions`, KIP-1092, has no
    aiokafka counterpart), its admin client cannot remove a dynamic member, and the one public
    knob, `group_instance_id` (static membership), never leaves at all and changes how a
    restarted member takes its partitions back. The hook is checked for, so an aiokafka
    without it keeps its own leave (logged).
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or not hasattr(coordinator, "_maybe_leave_group"):
        log.warning("aiokafka without GroupCoordinator._maybe_leave_group: its own leave applies")
        return
    coordinator._maybe_leave_group = functools.partial(_leave_if_stable, coordinator)


_SPANS = 1024
"""Acknowledged offset ranges kept per partition (the oldest go first)."""


def _add_span(spans: list[tuple[int, int]], low: int, high: int) -> None:
    """Add [low, high] to the ranges, joining it to one that ends just before it."""
    for i, (a, b) in enumerate(spans):
        if b + 1 == low:
            spans[i] = (a, high)
            return
    spans.append((low, high))
    if len(spans) > _SPANS:
        del spans[0]


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve a delivery's exception so asyncio does not report it as never retrieved."""
    if not future.cancelled():
        future.exception()


class KafkaConsumer:
    """One member of a Kafka consumer group; positions restart at committed offsets on rebalance."""

    def __init__(self, bus: KafkaBus, topics: tuple[str, ...], group: str) -> None:
        self.topics = topics
        self.group = group
        self._bus = bus
        self._consumer: AIOKafkaConsumer | None = None
        self.fetched_high: dict[tuple[str, int], int] = {}
        """Highest offset fetched per partition: records that certainly existed."""

    async def rewind(self, topic: str) -> list[int]:
        """Read the assigned partitions of `topic` again from their earliest offset (after a
        loss: nothing is skipped; the processors' dedup makes the repeats harmless)."""
        consumer = self._consumer
        if consumer is None:
            return []
        tps = [tp for tp in consumer.assignment() if tp.topic == topic]
        if tps:
            try:
                await consumer.seek_to_beginning(*tps)
            except KafkaError as exc:
                raise _bus_error(f"cannot rewind {topic!r}", exc) from exc
        self.fetched_high = {k: v for k, v in self.fetched_high.items() if k[0] != topic}
        return sorted(tp.partition for tp in tps)

    async def committed(self, topic: str) -> dict[int, int]:
        """The group's committed offset of each assigned partition of `topic` that has one
        (through the member's own coordinator: the admin client's OffsetFetch version does
        not decode from the test broker)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out: dict[int, int] = {}
        try:
            for tp in consumer.assignment():
                if tp.topic == topic:
                    offset = await consumer.committed(tp)
                    if offset is not None and offset >= 0:
                        out[tp.partition] = offset
        except KafkaError as exc:
            raise _bus_error(f"cannot read the committed offsets of {topic!r}", exc) from exc
        return out

    async def start(self) -> None:
        if self._consumer is not None:
            return
        bus = self._bus
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=bus.bootstrap,
            client_id=bus.client_id,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=bus.session_timeout_ms,
            heartbeat_interval_ms=max(bus.session_timeout_ms // 3, 100),
            request_timeout_ms=max(bus.request_timeout_ms, bus.session_timeout_ms + 5_000),
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise _bus_error(f"cannot join group {self.group!r}", exc) from exc
        _install_leave_policy(consumer)
        self._consumer = consumer
        bus._consumers.add(self)

    def assignment(self) -> set[tuple[str, int]]:
        consumer = self._consumer
        if consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in consumer.assignment()}

    async def fetch(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records` records, sorted by (topic, partition, offset); [] on timeout."""
        consumer = self._consumer
        if consumer is None:
            raise BusError("fetch on a consumer that is not started", retriable=False)
        try:
            batches = await consumer.getmany(
                timeout_ms=max(int(timeout * 1000), 0), max_records=max(max_records, 1)
            )
        except ConsumerStoppedError:
            return []  # stopped while waiting, as InMemoryConsumer answers
        except KafkaError as exc:
            raise _bus_error(f"fetch for group {self.group!r} failed", exc) from exc
        records: list[Record] = []
        for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition)):
            records.extend(
                Record(
                    r.topic,
                    r.partition,
                    r.offset,
                    r.key,
                    r.value if r.value is not None else b"",
                    tuple((k, v) for k, v in r.headers),
                )
                for r in batches[tp]
            )
            if batches[tp]:
                key = (tp.topic, tp.partition)
                high = batches[tp][-1].offset
                self.fetched_high[key] = max(self.fetched_high.get(key, -1), high)
        return records

    async def commit(self, records: Sequence[Record]) -> None:
        """Commit the partitions still assigned, then raise `CommitFailed` if any were not."""
        consumer = self._consumer
        if consumer is None:
            raise CommitFailed("commit on a consumer that is not started")
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        if not offsets:
            return
        assigned = consumer.assignment()
        owned = {tp: o for tp, o in offsets.items() if tp in assigned}
        lost = sorted((tp.topic, tp.partition) for tp in offsets if tp not in assigned)
        if owned:
            try:
                await consumer.commit(owned)
            except _REBALANCED as exc:
                raise CommitFailed(f"group {self.group!r} rebalanced: {exc}") from exc
            except KafkaError as exc:
                raise _bus_error(f"commit for group {self.group!r} failed", exc) from exc
        if lost:
            raise CommitFailed(f"partitions no longer assigned to this consumer: {lost}")

    async def lag(self) -> dict[tuple[str, int], int]:
        """Per owned partition, the records not yet fetched: the high watermark of the last
        fetch response minus the position (partitions without either yet are left out)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        lag: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue
            try:
                async with asyncio.timeout(0.2):
                    position = await consumer.position(tp)
            except (TimeoutError, KafkaError, IllegalStateError):
                continue
            lag[(tp.topic, tp.partition)] = max(end - position, 0)
        return lag

    async def stop(self) -> None:
        """Leave the group; what was fetched and not committed goes to the next owner.

        The caller commits first: the LeaveGroup goes out after aiokafka stopped heartbeating
        and rejoining, and only if the group is stable (`_leave_if_stable`); otherwise the
        partitions move once the session timeout evicts this member.
        """
        consumer, self._consumer = self._consumer, None
        self._bus._consumers.discard(self)
        if consumer is not None:
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            log.debug("consumer of %s left group %s", self.topics, self.group)
