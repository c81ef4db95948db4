"""Consumer lag read from the real Kafka-protocol broker and from the in-process bus."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from metre.contracts.bus import Bus, InMemoryBus, Message, Record
from metre.ingest.kafka_bus import KafkaBus
from metre.processors.lag import GroupLag

pytestmark = pytest.mark.integration


async def drain(bus: Bus, topic: str, group: str, want: int) -> list[Record]:
    consumer = bus.consumer([topic], group)
    await consumer.start()
    try:
        got: list[Record] = []
        async with asyncio.timeout(60):
            while len(got) < want:
                got += await consumer.fetch(100, 0.2)
        return got
    finally:
        await consumer.stop()


async def lag_follows_commits(bus: Bus, topic: str) -> None:
    group = f"lag-{uuid.uuid4().hex[:8]}"
    lag = GroupLag(bus, topic, group)
    try:
        await bus.ensure_topics([topic])
        assert await lag() == 0
        # Separate publishes: separate batches (the test broker's end offsets count batches).
        for i in range(5):
            await bus.publish(topic, [Message(f"k{i}".encode(), b"v")])
        assert await lag() == 5  # never committed: counted from the start of the log
        records = await drain(bus, topic, group, 5)
        consumer = bus.consumer([topic], group)
        await consumer.start()
        try:
            await consumer.commit(records[:2] if isinstance(bus, InMemoryBus) else records)
        finally:
            await consumer.stop()
        assert await lag() == (3 if isinstance(bus, InMemoryBus) else 0)
    finally:
        await lag.close()


async def test_lag_on_the_broker(kafka_bootstrap: str) -> None:
    bus = KafkaBus(kafka_bootstrap, 2, session_timeout_ms=6_000)
    await bus.start()
    try:
        await lag_follows_commits(bus, f"lag-{uuid.uuid4().hex[:8]}")
    finally:
        await bus.stop()


async def test_lag_in_process() -> None:
    bus = InMemoryBus(partitions=2)
    await bus.start()
    try:
        await lag_follows_commits(bus, "lag")
    finally:
        await bus.stop()
