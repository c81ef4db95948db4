"""One conformance suite for every Bus: InMemoryBus and KafkaBus (against the real broker)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from metre.contracts.bus import (
    Bus,
    BusError,
    CommitFailed,
    Consumer,
    InMemoryBus,
    Message,
    Record,
    partition_for,
)
from metre.ingest.kafka_bus import KafkaBus
from testkit.broker import Broker, free_port

PARTITIONS = 4
SESSION_TIMEOUT_MS = 1_000
HANDOVER = 15.0
"""Seconds within which a stopped member's partitions are read by the rest of its group: on
the test broker about 1 s (a heartbeat interval, then a join held for half the session
timeout); the bound is 15 session timeouts so that a loaded 2-core machine does not fail it."""


@pytest.fixture(
    params=[
        "memory",
        pytest.param("kafka", marks=pytest.mark.integration),
    ]
)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    impl: Bus
    if request.param == "memory":
        impl = InMemoryBus(PARTITIONS)
    else:
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        # Short session timeouts: the test broker holds a join for about half of it.
        impl = KafkaBus(bootstrap, PARTITIONS, session_timeout_ms=SESSION_TIMEOUT_MS)
    await impl.start()
    try:
        yield impl
    finally:
        await impl.stop()


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def group() -> str:
    return f"g-{uuid.uuid4().hex[:12]}"


def messages(keys: int, per_key: int, tag: str = "") -> list[Message]:
    """`per_key` messages for each of `keys` keys, interleaved; values say key and sequence."""
    return [
        Message(f"k{k}".encode(), f"{tag}k{k}:{i}".encode(), (("seq", str(i).encode()),))
        for i in range(per_key)
        for k in range(keys)
    ]


async def started(bus: Bus, topic: str, group: str) -> Consumer:
    consumer = bus.consumer([topic], group)
    await consumer.start()
    return consumer


async def drain(
    consumers: Sequence[Consumer], want: int, *, commit: bool = True, within: float = 30.0
) -> list[list[Record]]:
    """Fetch with every consumer until `want` distinct records arrived (or `within` seconds)."""
    got: list[list[Record]] = [[] for _ in consumers]
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + within

    async def one(i: int, c: Consumer) -> None:
        while len(seen) < want and time.monotonic() < deadline:
            batch = await c.fetch(100, 0.2)
            got[i].extend(batch)
            seen.update((r.partition, r.offset) for r in batch)
            if commit and batch:
                await c.commit(batch)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(consumers)))
    return got


async def wait_for_assignment(
    consumers: Sequence[Consumer], partitions: int, within: float = 30.0
) -> None:
    """Until the members' assignments are non-empty, disjoint and cover `partitions`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        owned = [c.assignment() for c in consumers]
        union = set().union(*owned)
        if all(owned) and len(union) == partitions == sum(len(o) for o in owned):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no stable assignment: {[c.assignment() for c in consumers]}")


async def fetch_some(consumer: Consumer, most: int, within: float = 30.0) -> list[Record]:
    """The first non-empty batch of at most `most` records."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        batch = await consumer.fetch(most, 0.2)
        if batch:
            return batch
    raise AssertionError(f"nothing to fetch in {within}s")


def values(records: Iterable[Record]) -> list[bytes]:
    return [r.value for r in records]


async def test_per_key_order_and_partition(bus: Bus, topic: str, group: str) -> None:
    await bus.ensure_topics([topic])
    sent = messages(keys=6, per_key=20)
    await bus.publish(topic, sent[:50])
    await bus.publish(topic, sent[50:])
    consumer = await started(bus, topic, group)
    [got] = await drain([consumer], len(sent))
    await consumer.stop()
    assert sorted(values(got)) == sorted(m.value for m in sent)
    for k in range(6):
        key = f"k{k}".encode()
        mine = [r for r in got if r.key == key]
        assert values(mine) == [f"k{k}:{i}".encode() for i in range(20)]
        assert {r.partition for r in mine} == {partition_for(key, PARTITIONS)}
        assert [r.headers for r in mine] == [(("seq", str(i).encode()),) for i in range(20)]
        assert all(r.topic == topic for r in mine)


async def test_uncommitted_records_are_redelivered_after_stop(
    bus: Bus, topic: str, group: str
) -> None:
    await bus.ensure_topics([topic])
    sent = messages(keys=8, per_key=5)
    await bus.publish(topic, sent)
    first = await started(bus, topic, group)
    [got] = await drain([first], len(sent), commit=False)
    assert len(got) == len(sent)
    await first.stop()
    second = await started(bus, topic, group)
    [again] = await drain([second], len(sent))
    await second.stop()
    assert sorted(values(again)) == sorted(m.value for m in sent)


async def test_committed_records_are_not_redelivered(bus: Bus, topic: str, group: str) -> None:
    await bus.ensure_topics([topic])
    old = messages(keys=8, per_key=5, tag="old-")
    await bus.publish(topic, old)
    first = await started(bus, topic, group)
    [got] = await drain([first], len(old))
    assert len(got) == len(old)
    await first.stop()
    new = messages(keys=8, per_key=2, tag="new-")
    await bus.publish(topic, new)
    second = await started(bus, topic, group)
    [rest] = await drain([second], len(new))
    assert await second.fetch(100, 0.5) == []
    await second.stop()
    assert sorted(values(rest)) == sorted(m.value for m in new)


async def test_partial_commit_redelivers_only_the_rest(bus: Bus, topic: str, group: str) -> None:
    await bus.ensure_topics([topic])
    sent = messages(keys=1, per_key=10)
    await bus.publish(topic, sent)
    first = await started(bus, topic, group)
    [got] = await drain([first], len(sent), commit=False)
    await first.commit([r for r in got if r.offset == 3])  # offsets 0..3 are done
    await first.stop()
    second = await started(bus, topic, group)
    [rest] = await drain([second], 6)
    await second.stop()
    assert values(rest) == [f"k0:{i}".encode() for i in range(4, 10)]


async def test_two_members_split_partitions_and_see_everything_once(
    bus: Bus, topic: str, group: str
) -> None:
    await bus.ensure_topics([topic])
    a, b = await started(bus, topic, group), await started(bus, topic, group)
    await wait_for_assignment([a, b], PARTITIONS)
    sent = messages(keys=16, per_key=10)
    await bus.publish(topic, sent)
    got_a, got_b = await drain([a, b], len(sent))
    owned_a, owned_b = a.assignment(), b.assignment()
    await a.stop()
    await b.stop()
    assert got_a
    assert got_b
    assert {(r.topic, r.partition) for r in got_a} <= owned_a
    assert {(r.topic, r.partition) for r in got_b} <= owned_b
    assert sorted(values(got_a + got_b)) == sorted(m.value for m in sent)


async def test_member_joining_mid_stream_loses_nothing(bus: Bus, topic: str, group: str) -> None:
    await bus.ensure_topics([topic])
    first = await started(bus, topic, group)
    before = messages(keys=16, per_key=5, tag="before-")
    await bus.publish(topic, before)
    early = await fetch_some(first, 10)
    await first.commit(early)
    in_flight = await fetch_some(first, 10)  # fetched, never committed: must come again
    second = await started(bus, topic, group)
    await wait_for_assignment([first, second], PARTITIONS)
    after = messages(keys=16, per_key=5, tag="after-")
    await bus.publish(topic, after)
    everything = {m.value for m in before + after}
    seen: set[bytes] = set(values(early))
    deadline = time.monotonic() + 30

    async def work(c: Consumer) -> list[Record]:
        mine: list[Record] = []
        while not everything <= seen and time.monotonic() < deadline:
            batch = await c.fetch(7, 0.2)
            mine.extend(batch)
            seen.update(values(batch))
            await c.commit(batch)
        return mine

    got_first, got_second = await asyncio.gather(work(first), work(second))
    await first.stop()
    await second.stop()
    assert in_flight
    assert seen == everything
    assert got_second, "the member that joined took over partitions"
    assert set(values(in_flight)) <= set(values(got_first + got_second)), "redelivered"


async def test_stopped_members_partitions_go_to_the_remaining_member(
    bus: Bus, topic: str, group: str
) -> None:
    await bus.ensure_topics([topic])
    a, b = await started(bus, topic, group), await started(bus, topic, group)
    await wait_for_assignment([a, b], PARTITIONS)
    sent = messages(keys=16, per_key=3)
    await bus.publish(topic, sent)
    began = time.monotonic()
    await a.stop()  # it read nothing: every record is b's to read, on every partition
    [got] = await drain([b], len(sent), within=HANDOVER)
    took = time.monotonic() - began
    owned = b.assignment()
    await b.stop()
    assert sorted(values(got)) == sorted(m.value for m in sent), f"after {took:.1f} s"
    assert owned == {(topic, p) for p in range(PARTITIONS)}
    assert took < HANDOVER


async def test_member_stopping_during_a_rebalance_does_not_stall_the_group(
    bus: Bus, topic: str, group: str
) -> None:
    # The first member leads the group; it stops while a third member's join is under way.
    # (Tansu 0.6.0 keeps a leader that sends LeaveGroup while the group forms: the group would
    # never sync again. KafkaBus does not leave during a rebalance; the session expires.)
    await bus.ensure_topics([topic])
    a = await started(bus, topic, group)
    b = await started(bus, topic, group)
    await wait_for_assignment([a, b], PARTITIONS)
    c = bus.consumer([topic], group)
    joining = asyncio.create_task(c.start())
    await asyncio.sleep(0.3)
    await a.stop()
    await asyncio.wait_for(joining, HANDOVER)
    sent = messages(keys=16, per_key=3)
    await bus.publish(topic, sent)
    got_b, got_c = await drain([b, c], len(sent), within=2 * HANDOVER)
    await b.stop()
    await c.stop()
    assert sorted(values(got_b + got_c)) == sorted(m.value for m in sent)


async def test_commit_of_a_revoked_partition_raises(bus: Bus, topic: str, group: str) -> None:
    await bus.ensure_topics([topic])
    sent = messages(keys=16, per_key=3)
    await bus.publish(topic, sent)
    first = await started(bus, topic, group)
    [got] = await drain([first], len(sent), commit=False)
    assert {r.partition for r in got} == set(range(PARTITIONS))
    second = await started(bus, topic, group)
    await wait_for_assignment([first, second], PARTITIONS)
    with pytest.raises(CommitFailed):
        await first.commit(got)
    # The partitions that moved were not committed: their new owner gets all their records.
    moved = second.assignment()
    [taken] = await drain([second], sum(1 for r in got if (r.topic, r.partition) in moved))
    await first.stop()
    await second.stop()
    assert sorted(values(taken)) == sorted(
        values(r for r in got if (r.topic, r.partition) in moved)
    )


async def test_independent_groups_each_see_everything(bus: Bus, topic: str) -> None:
    await bus.ensure_topics([topic])
    sent = messages(keys=8, per_key=4)
    await bus.publish(topic, sent)
    one = await started(bus, topic, f"g1-{topic}")
    two = await started(bus, topic, f"g2-{topic}")
    [got_one], [got_two] = await asyncio.gather(drain([one], len(sent)), drain([two], len(sent)))
    await one.stop()
    await two.stop()
    assert sorted(values(got_one)) == sorted(values(got_two)) == sorted(m.value for m in sent)


async def test_publish_returns_once_records_are_stored(bus: Bus, topic: str, group: str) -> None:
    await bus.ensure_topics([topic])
    sent = [Message(None if i % 3 == 0 else b"k", b"v%d" % i) for i in range(200)]
    await bus.publish(topic, sent)
    late = await started(bus, topic, group)
    [got] = await drain([late], len(sent), within=20)
    await late.stop()
    assert sorted(values(got)) == sorted(m.value for m in sent)


async def test_waiting_fetch_wakes_on_publish(bus: Bus, topic: str, group: str) -> None:
    await bus.ensure_topics([topic])
    consumer = await started(bus, topic, group)
    await wait_for_assignment([consumer], PARTITIONS)
    assert await consumer.fetch(10, 0.3) == []
    waiting = asyncio.create_task(consumer.fetch(10, 20.0))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    began = time.monotonic()
    await bus.publish(topic, [Message(b"k", b"hello")])
    got = await waiting
    await consumer.stop()
    assert values(got) == [b"hello"]
    assert time.monotonic() - began < 5.0


async def test_stop_ends_a_waiting_fetch_and_commits_fail_after(
    bus: Bus, topic: str, group: str
) -> None:
    await bus.ensure_topics([topic])
    await bus.publish(topic, [Message(b"k", b"v")])
    consumer = await started(bus, topic, group)
    got = await fetch_some(consumer, 10)
    waiting = asyncio.create_task(consumer.fetch(10, 20.0))
    await asyncio.sleep(0.3)
    await consumer.stop()
    assert await asyncio.wait_for(waiting, 5) == []
    assert consumer.assignment() == set()
    with pytest.raises(CommitFailed):
        await consumer.commit(got)


@pytest.mark.integration
async def test_kafka_publish_fails_while_the_broker_is_down_then_recovers(
    tmp_path: Path, topic: str, group: str
) -> None:
    # A private broker: killing the session's one would empty it under other tests.
    broker = Broker(free_port(), tmp_path / "broker.log")
    broker.start()
    bus = KafkaBus(broker.bootstrap, 2, session_timeout_ms=1_000, request_timeout_ms=2_000)
    try:
        await bus.start()
        await bus.ensure_topics([topic])
        await bus.publish(topic, [Message(b"k", b"before")])
        broker.kill()
        began = time.monotonic()
        with pytest.raises(BusError) as failed:
            await bus.publish(topic, [Message(b"k", b"lost")])
        assert failed.value.retriable
        assert time.monotonic() - began < 10
        broker.start()  # memory storage: an empty broker on the same port
        await bus.ensure_topics([topic])
        await bus.publish(topic, [Message(b"k", b"after")])
        consumer = await started(bus, topic, group)
        [got] = await drain([consumer], 1)
        assert values(got) == [b"after"]
    finally:
        await bus.stop()
        broker.stop()


@pytest.mark.integration
async def test_kafka_stopped_member_leaves_the_group_at_once(
    kafka_bootstrap: str, topic: str, group: str
) -> None:
    # Leaving, not the session timeout: the member is gone from the group's description as
    # soon as `stop` returns, also in the test broker's generation 0 (aiokafka leaves from 1).
    # No expiry can explain it: the member heartbeat less than a session timeout ago.
    bus = KafkaBus(kafka_bootstrap, PARTITIONS, session_timeout_ms=6_000)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await bus.start()
    await admin.start()
    try:
        await bus.ensure_topics([topic])
        # Started together, they form the group's first generation (0 on the test broker).
        a, b = await asyncio.gather(*(started(bus, topic, group) for _ in range(2)))
        await wait_for_assignment([a, b], PARTITIONS, within=60)
        assert len(await group_members(admin, group)) == 2
        assert len(await group_members(admin, group)) == 2
        await a.stop()
        assert len(await group_members(admin, group)) == 1
        # b now leads a rebalance: it lets its session expire instead of leaving (see
        # `_leave_if_stable`), so it is not checked here.
        await b.stop()
    finally:
        await admin.close()
        await bus.stop()


async def group_members(admin: AIOKafkaAdminClient, group: str) -> list[str]:
    """Member ids the broker lists for `group` now (DescribeGroups)."""
    [response] = await admin.describe_consumer_groups([group])
    [(error_code, _, _, _, _, members)] = response.groups
    assert error_code == 0
    return [m[0] for m in members]


# InMemoryBus only: what the Kafka client already guarantees for KafkaBus.


JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}
"""`Utils.murmur2` of the Java client on these keys (the vectors of Kafka's own UtilsTest)."""


def test_partition_for_is_where_kafka_clients_put_a_key() -> None:
    for key, java in JAVA_MURMUR2.items():
        for n in (1, 3, 4, 12):
            assert partition_for(key, n) == (java & 0x7FFFFFFF) % n, key
    default = DefaultPartitioner()
    for n in (1, 4, 7):
        for _ in range(200):
            key = os.urandom(n * 3)
            assert partition_for(key, n) == default(key, list(range(n)), list(range(n)))


async def test_memory_fetch_waits_without_spinning(topic: str, group: str) -> None:
    bus = InMemoryBus(PARTITIONS)
    await bus.start()
    await bus.ensure_topics([topic])
    consumer = await started(bus, topic, group)
    cpu, wall = time.process_time(), time.monotonic()
    assert await consumer.fetch(10, 0.5) == []
    assert time.monotonic() - wall >= 0.49
    assert time.process_time() - cpu < 0.1
    await bus.stop()
    assert consumer.assignment() == set()


async def test_memory_publish_to_unknown_topic_fails(topic: str) -> None:
    bus = InMemoryBus(PARTITIONS)
    await bus.start()
    with pytest.raises(Exception, match="ensure_topics"):
        await bus.publish(topic, [Message(b"k", b"v")])
    await bus.stop()


async def test_memory_topic_created_after_subscribing_is_assigned(topic: str, group: str) -> None:
    bus = InMemoryBus(PARTITIONS)
    await bus.start()
    await bus.ensure_topics(["other"])
    await bus.publish("other", [Message(b"k", b"old")])
    bystander = await started(bus, "other", f"{group}-b")
    in_flight = await fetch_some(bystander, 10)
    early = await started(bus, topic, group)
    assert early.assignment() == set()
    await bus.ensure_topics([topic])
    assert early.assignment() == {(topic, p) for p in range(PARTITIONS)}
    await bus.publish("other", [Message(b"k", b"new")])
    # The bystander's group did not rebalance, so its position survived.
    assert values(await fetch_some(bystander, 10)) == [b"new"]
    assert values(in_flight) == [b"old"]
    await bus.stop()


async def test_memory_trim_forgets_only_what_every_group_committed(topic: str) -> None:
    bus = InMemoryBus(1)
    await bus.start()
    await bus.ensure_topics([topic])
    await bus.publish(topic, [Message(b"k", b"%d" % i) for i in range(10)])
    fast = await started(bus, topic, "fast")
    slow = await started(bus, topic, "slow")
    await fast.commit(await drain_all(fast, 10))
    slow_got = await drain_all(slow, 10)
    await slow.commit([r for r in slow_got if r.offset == 3])
    assert bus.trim() == 4
    assert bus.trim() == 0
    await bus.publish(topic, [Message(b"k", b"10")])
    assert bus.end_offsets(topic) == {0: 11}
    late = await started(bus, topic, "late")  # starts at the oldest record still held
    assert [r.offset for r in await drain_all(late, 7)] == list(range(4, 11))
    await slow.stop()
    again = await started(bus, topic, "slow")
    assert values(await drain_all(again, 7)) == [b"%d" % i for i in range(4, 11)]
    await bus.stop()


async def drain_all(consumer: Consumer, n: int) -> list[Record]:
    [got] = await drain([consumer], n, commit=False)
    assert len(got) == n
    return got


async def test_in_memory_trim_can_forget_unread_topics() -> None:
    bus = InMemoryBus(partitions=2)
    await bus.start()
    await bus.ensure_topics(["read", "unread"])
    await bus.publish("read", [Message(b"k", b"v")] * 3)
    await bus.publish("unread", [Message(b"k", b"v")] * 4)
    c = bus.consumer(["read"], "g")
    await c.start()
    got = await c.fetch(10, 0.1)
    assert bus.trim() == 0  # nothing committed, nobody reads "unread": all kept
    await c.commit(got)
    assert bus.trim() == 3
    assert bus.trim(unread=True) == 4
    assert bus.trim(unread=True) == 0
    await c.stop()
    await bus.stop()
