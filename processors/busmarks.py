"""Bus marks, data-loss events and the freshness check in PostgreSQL (I/O; migration 0013).

Every role that sees the broker compares what it answers with the marks here
(ingest/dataloss.py decides); the comparison and the new marks are one transaction holding the
topic's mark rows, so a loss seen by two roles at once is recorded once. `data_loss_status` is
what readiness and the pipeline endpoint read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from metre.ingest.dataloss import Loss, Mark, Observed, affected, compare, next_marks


@dataclass(frozen=True, slots=True)
class LossEvent:
    id: int
    loss: Loss
    repo_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DataLossStatus:
    """What is known of data loss on the bus, from PostgreSQL (every replica agrees)."""

    count: int
    """Losses recorded, ever."""
    unhealed: int
    """Losses whose repositories are not republished yet."""
    lagging: int
    """Repositories whose stored head is not applied after the freshness bound."""
    last: dict[str, Any] | None
    """The latest loss: kind, topic, partitions, detail, role, repositories, when, heal."""


class BusMarks:
    """The marks and loss events over an asyncpg pool (the store's, `PgStore.pool`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def compare_and_mark(
        self,
        topic: str,
        now: Observed,
        role: str,
        decide: Callable[[str, dict[int, Mark], Observed], list[Loss]] = compare,
    ) -> list[LossEvent]:
        """Compare `now` with the topic's marks, record any loss (with the repositories it
        touched), and store the new marks: one transaction, the mark rows locked."""
        async with self.pool.acquire() as con, con.transaction():
            await con.execute(
                "SELECT pg_advisory_xact_lock(hashtext('metre.bus_marks:' || $1))", topic
            )
            rows = await con.fetch(
                "SELECT partition, cluster_id, partitions, end_seen, produced FROM bus_marks "
                "WHERE topic = $1",
                topic,
            )
            marks = {
                r["partition"]: Mark(
                    r["partition"], r["cluster_id"], r["partitions"], r["end_seen"], r["produced"]
                )
                for r in rows
            }
            losses = decide(topic, marks, now)
            events: list[LossEvent] = []
            if losses:
                repos = [r["id"] for r in await con.fetch("SELECT id FROM repos")]
                for loss in losses:
                    ids = affected(repos, loss)
                    event_id = await con.fetchval(
                        "INSERT INTO data_loss_events (kind, topic, partitions, detail, role, "
                        "repo_ids) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        loss.kind,
                        topic,
                        list(loss.partitions),
                        loss.detail,
                        role,
                        ids,
                    )
                    events.append(LossEvent(event_id, loss, tuple(ids)))
                    await con.execute(
                        "UPDATE repos SET lagging_reason = $2 WHERE id = ANY($1::bigint[])",
                        ids,
                        f"data loss on the bus ({loss.kind}, event {event_id}): being reconciled",
                    )
            new = next_marks(marks, now, losses)
            if new != marks:
                await con.execute("DELETE FROM bus_marks WHERE topic = $1", topic)
                await con.executemany(
                    "INSERT INTO bus_marks (topic, partition, cluster_id, partitions, end_seen, "
                    "produced) VALUES ($1, $2, $3, $4, $5, $6)",
                    [
                        (topic, m.partition, m.cluster_id, m.partitions, m.end_seen, m.produced)
                        for m in new.values()
                    ],
                )
            return events

    async def unhealed(self, topic: str) -> list[LossEvent]:
        """Losses of `topic` not healed yet (oldest first), whoever recorded them."""
        rows = await self.pool.fetch(
            "SELECT id, kind, partitions, detail, repo_ids FROM data_loss_events "
            "WHERE topic = $1 AND healed_at IS NULL ORDER BY id",
            topic,
        )
        return [
            LossEvent(
                r["id"],
                Loss(r["kind"], topic, tuple(r["partitions"]), r["detail"], 0),
                tuple(r["repo_ids"]),
            )
            for r in rows
        ]

    async def latest_id(self, topic: str) -> int:
        """The newest loss event of `topic` (0: none)."""
        return int(
            await self.pool.fetchval(
                "SELECT COALESCE(max(id), 0) FROM data_loss_events WHERE topic = $1", topic
            )
        )

    async def healed(self, event_id: int, republished: int) -> None:
        await self.pool.execute(
            "UPDATE data_loss_events SET healed_at = now(), republished = $2 WHERE id = $1",
            event_id,
            republished,
        )

    async def lagging(self) -> dict[int, int]:
        """Lagging repositories and the commits PostgreSQL holds of each (progress shows)."""
        rows = await self.pool.fetch(
            "SELECT r.id, (SELECT count(*) FROM commits c WHERE c.repo_id = r.id) AS n "
            "FROM repos r WHERE r.lagging_reason IS NOT NULL"
        )
        return {r["id"]: int(r["n"]) for r in rows}

    async def check_freshness(self, lag_seconds: float) -> tuple[list[int], list[int]]:
        """Flag repositories whose stored head has not been applied `lag_seconds` after it was
        stored, clear those whose head now is (also those a data loss flagged); returns
        (newly lagging, cleared) ids."""
        rows = await self.pool.fetch(
            """
            WITH judged AS (
                SELECT r.id, r.lagging_reason AS was,
                       CASE WHEN r.head IS NULL
                                 OR EXISTS (SELECT 1 FROM commits c
                                            WHERE c.repo_id = r.id AND c.sha = r.head)
                            THEN NULL
                            WHEN r.lagging_reason LIKE 'data loss%'
                            THEN r.lagging_reason  -- until its head is applied
                            WHEN r.head_at < now() - make_interval(secs => $1)
                            THEN format('head %s, stored at %s, not applied %s s later',
                                        left(r.head, 12), r.head_at,
                                        floor(extract(epoch FROM now() - r.head_at))::bigint)
                       END AS reason
                FROM repos r
            )
            UPDATE repos r SET lagging_reason = j.reason
            FROM judged j
            WHERE r.id = j.id AND (j.was IS NULL) <> (j.reason IS NULL)
            RETURNING r.id, j.reason
            """,
            float(lag_seconds),
        )
        newly = sorted(r["id"] for r in rows if r["reason"] is not None)
        cleared = sorted(r["id"] for r in rows if r["reason"] is None)
        return newly, cleared


async def data_loss_status(pool: asyncpg.Pool) -> DataLossStatus:
    """Data loss on the bus as PostgreSQL records it: for readiness and `/api/v1/pipeline`."""
    async with pool.acquire() as con:
        counts = await con.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE healed_at IS NULL) AS unhealed "
            "FROM data_loss_events"
        )
        assert counts is not None
        count, unhealed = counts["n"], counts["unhealed"]
        lagging = await con.fetchval("SELECT count(*) FROM repos WHERE lagging_reason IS NOT NULL")
        row = await con.fetchrow(
            "SELECT id, kind, topic, partitions, detail, role, repo_ids, detected_at, healed_at, "
            "republished FROM data_loss_events ORDER BY id DESC LIMIT 1"
        )
    last = None
    if row is not None:
        last = dict(row)
        last["partitions"] = list(row["partitions"])
        last["repo_ids"] = list(row["repo_ids"])
    return DataLossStatus(int(count), int(unhealed), int(lagging), last)
