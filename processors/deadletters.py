"""Dead letters (I/O): poison records a processor sent to the dead-letter topic, stored with
the batch that met them (processors/sink.py records them in its transaction), and read back
for the pipeline's own status.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from metre.processors.database import Database

Connection = Any  # asyncpg.Connection or a pool's connection proxy


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record a processor sent to the dead-letter topic, and why (stored with its batch)."""

    topic: str
    partition: int
    offset: int
    error: str
    payload: bytes


DEAD_LETTER_PAYLOAD_CHARS = 2000
"""How much of a poison record's payload is kept in PostgreSQL (the topic keeps it whole)."""

_INSERT_DEAD_LETTERS = """
INSERT INTO dead_letters (topic, partition, "offset", payload_md5, error, payload, payload_bytes)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                     $7::int[])
ON CONFLICT DO NOTHING
"""


def _dead_letter_arrays(dead: Sequence[DeadLetter]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(7)]
    for d in dead:
        text = d.payload[: DEAD_LETTER_PAYLOAD_CHARS * 4].decode("utf-8", "backslashreplace")
        text = text[:DEAD_LETTER_PAYLOAD_CHARS].replace("\x00", "\\x00")
        digest = hashlib.md5(d.payload, usedforsecurity=False).hexdigest()
        error = d.error.replace("\x00", "\\x00")[:2000]
        row = (d.topic, d.partition, d.offset, digest, error, text, len(d.payload))
        for col, v in zip(cols, row, strict=True):
            col.append(v)
    return cols


async def record(con: Connection, dead: Sequence[DeadLetter]) -> None:
    """Store `dead` in the caller's transaction (a record stored already is kept as it is)."""
    await con.execute(_INSERT_DEAD_LETTERS, *_dead_letter_arrays(dead))


class DeadLetters(Database):
    """The dead letters stored."""

    async def dead_letter_summary(self, last: int = 20) -> tuple[int, list[dict[str, Any]]]:
        """(poison records ever dead-lettered, the `last` most recent, newest first)."""
        async with self._pool.acquire() as con:
            count: int = await con.fetchval("SELECT count(*) FROM dead_letters")
            recs = await con.fetch(
                'SELECT topic, partition, "offset", error, payload, payload_bytes, created_at'
                " FROM dead_letters ORDER BY id DESC LIMIT $1",
                last,
            )
        return count, [
            {
                "topic": r["topic"],
                "partition": r["partition"],
                "offset": r["offset"],
                "error": r["error"],
                "payload": r["payload"],
                "payload_bytes": r["payload_bytes"],
                "at": r["created_at"].astimezone(UTC).isoformat(),
            }
            for r in recs
        ]
