"""Consumer lag of a group on a topic (I/O): records published and not yet committed.

In `metre up` the in-process bus knows both ends; on Kafka the group's committed offsets come
from the admin API and the log ends from a consumer without a group (it joins nothing). A
partition the group never committed counts from the start of its log, as a new consumer
reading from the earliest offset would.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from metre.contracts.bus import Bus, InMemoryBus
from metre.ingest.kafka_bus import KafkaBus


class GroupLag:
    """Measures `group`'s lag on `topic`; `close()` releases the Kafka clients it opened."""

    def __init__(self, bus: Bus, topic: str, group: str) -> None:
        self._bus = bus
        self._topic = topic
        self._group = group
        self._admin: AIOKafkaAdminClient | None = None
        self._ends: AIOKafkaConsumer | None = None

    async def __call__(self) -> int | None:
        """The lag in records, or None when the bus cannot be asked just now."""
        bus = self._bus
        if isinstance(bus, InMemoryBus):
            ends = bus.end_offsets(self._topic)
            done = bus.committed(self._group, self._topic)
            return sum(max(0, end - done.get(p, 0)) for p, end in ends.items())
        if not isinstance(bus, KafkaBus):
            return None
        try:
            return await self._kafka(bus)
        except Exception:  # noqa: BLE001 (aiokafka raises more than KafkaError mid-restart)
            await self.close()
            return None

    async def _kafka(self, bus: KafkaBus) -> int:
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(
                bootstrap_servers=bus.bootstrap, client_id="metre-lag"
            )
            await self._admin.start()
        if self._ends is None:
            self._ends = AIOKafkaConsumer(
                bootstrap_servers=bus.bootstrap, client_id="metre-lag", enable_auto_commit=False
            )
            await self._ends.start()
        partitions = self._ends.partitions_for_topic(self._topic) or set()
        if not partitions:
            await self._ends.force_metadata_update()
            partitions = self._ends.partitions_for_topic(self._topic) or set()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        if not tps:
            return 0
        ends: dict[TopicPartition, int] = await self._ends.end_offsets(tps)
        committed: dict[Any, Any] = await self._admin.list_consumer_group_offsets(
            self._group, partitions=tps
        )
        lag = 0
        for tp, end in ends.items():
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(0, end - offset)
        return lag

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        ends, self._ends = self._ends, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        if ends is not None:
            with contextlib.suppress(Exception):
                await ends.stop()
