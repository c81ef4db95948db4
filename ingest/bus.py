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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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
