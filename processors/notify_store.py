"""Notification targets, rules, alerts and deliveries in PostgreSQL (I/O).

A rule's record of each subject and the alerts it raises are written in one transaction, so a
notifier that crashes between them neither loses an alert nor raises it twice. A digest takes
every waiting alert of its target in the transaction that creates its delivery row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from metre.processors.digest import DigestAlert, payload
from metre.processors.notify_rules import Alert, Rule, Seen


class UnknownTarget(Exception):
    """A rule names a target that does not exist."""


def masked(url: str) -> str:
    """A target URL as shown by the API: chat webhook URLs carry their secret in the path."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _target(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": r["id"],
        "kind": r["kind"],
        "name": r["name"],
        "url": masked(r["url"]),
        "created_at": _iso(r["created_at"]),
    }


def _rule(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": r["id"],
        "kind": r["kind"],
        "repo_id": r["repo_id"],
        "threshold": r["threshold"],
        "target_id": r["target_id"],
        "created_at": _iso(r["created_at"]),
    }


class NotifyStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # -- configuration (the API) -------------------------------------------------------------

    async def add_target(self, kind: str, url: str, name: str) -> dict[str, Any]:
        r = await self._pool.fetchrow(
            "INSERT INTO notify_targets (kind, url, name) VALUES ($1, $2, $3) RETURNING *",
            kind,
            url,
            name,
        )
        assert r is not None
        return _target(r)

    async def list_targets(self) -> list[dict[str, Any]]:
        return [
            _target(r) for r in await self._pool.fetch("SELECT * FROM notify_targets ORDER BY id")
        ]

    async def delete_target(self, target_id: int) -> bool:
        done = await self._pool.execute("DELETE FROM notify_targets WHERE id = $1", target_id)
        return bool(done.endswith(" 1"))

    async def add_rule(
        self, kind: str, repo_id: int | None, threshold: float, target_id: int
    ) -> dict[str, Any]:
        try:
            r = await self._pool.fetchrow(
                "INSERT INTO notify_rules (kind, repo_id, threshold, target_id)"
                " VALUES ($1, $2, $3, $4) RETURNING *",
                kind,
                repo_id,
                threshold,
                target_id,
            )
        except asyncpg.ForeignKeyViolationError:
            raise UnknownTarget(target_id) from None
        assert r is not None
        return _rule(r)

    async def list_rules(self) -> list[dict[str, Any]]:
        return [_rule(r) for r in await self._pool.fetch("SELECT * FROM notify_rules ORDER BY id")]

    async def delete_rule(self, rule_id: int) -> bool:
        done = await self._pool.execute("DELETE FROM notify_rules WHERE id = $1", rule_id)
        return bool(done.endswith(" 1"))

    async def list_alerts(self, limit: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM notify_alerts ORDER BY id DESC LIMIT $1", limit
        )
        return [
            {
                "id": r["id"],
                "rule_id": r["rule_id"],
                "target_id": r["target_id"],
                "repo_id": r["repo_id"],
                "kind": r["kind"],
                "resolved": r["resolved"],
                "message": r["message"],
                "raised_at": _iso(r["raised_at"]),
                "delivery_id": r["delivery_id"],
            }
            for r in rows
        ]

    async def list_deliveries(self, limit: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM notify_deliveries ORDER BY id DESC LIMIT $1", limit
        )
        return [
            {
                "id": r["id"],
                "target_id": r["target_id"],
                "status": r["status"],
                "alerts": r["alerts"],
                "attempts": r["attempts"],
                "next_attempt_at": _iso(r["next_attempt_at"]) if r["status"] == "pending" else None,
                "last_error": r["last_error"],
                "created_at": _iso(r["created_at"]),
                "delivered_at": _iso(r["delivered_at"]),
            }
            for r in rows
        ]

    # -- evaluation (the notifier) -----------------------------------------------------------

    async def rules(self) -> list[Rule]:
        rows = await self._pool.fetch(
            "SELECT id, kind, repo_id, threshold, target_id FROM notify_rules ORDER BY id"
        )
        return [
            Rule(r["id"], r["kind"], r["repo_id"], r["threshold"], r["target_id"]) for r in rows
        ]

    async def seen(self, rule_ids: Sequence[int]) -> dict[tuple[int, str], Seen]:
        rows = await self._pool.fetch(
            "SELECT rule_id, subject, firing, value FROM notify_conditions"
            " WHERE rule_id = ANY($1::bigint[])",
            list(rule_ids),
        )
        return {(r["rule_id"], r["subject"]): Seen(r["firing"], r["value"]) for r in rows}

    async def record(
        self, records: Sequence[tuple[int, str, Seen]], alerts: Sequence[Alert]
    ) -> None:
        """Store what the rules saw and the alerts they raised, together (a deleted rule's
        records and alerts are dropped: it was deleted while being evaluated)."""
        if not records and not alerts:
            return
        async with self._pool.acquire() as con, con.transaction():
            live = {
                r["id"]
                for r in await con.fetch(
                    "SELECT id FROM notify_rules WHERE id = ANY($1::bigint[]) FOR SHARE",
                    sorted({rid for rid, _, _ in records} | {a.rule_id for a in alerts}),
                )
            }
            rows = [(rid, s, seen.firing, seen.value) for rid, s, seen in records if rid in live]
            await con.executemany(
                "INSERT INTO notify_conditions (rule_id, subject, firing, value)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (rule_id, subject) DO UPDATE"
                " SET changed_at = CASE WHEN notify_conditions.firing <> EXCLUDED.firing"
                " THEN now() ELSE notify_conditions.changed_at END,"
                " firing = EXCLUDED.firing, value = EXCLUDED.value",
                sorted(rows, key=lambda r: (r[0], r[1])),
            )
            await con.executemany(
                "INSERT INTO notify_alerts (rule_id, target_id, repo_id, kind, resolved, message)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (a.rule_id, a.target_id, a.repo_id, a.kind, a.resolved, a.message)
                    for a in alerts
                    if a.rule_id in live
                ],
            )

    async def make_digests(self, interval: float, now: datetime) -> int:
        """Gather each target's waiting alerts into one delivery, for targets whose last
        digest is at least `interval` seconds old (or that never had one); how many."""
        made = 0
        async with self._pool.acquire() as con, con.transaction():
            targets = await con.fetch(
                "SELECT t.id, t.kind FROM notify_targets t"
                " WHERE EXISTS (SELECT 1 FROM notify_alerts a"
                "               WHERE a.target_id = t.id AND a.delivery_id IS NULL)"
                " AND NOT EXISTS (SELECT 1 FROM notify_deliveries d"
                "                 WHERE d.target_id = t.id AND d.created_at > $1)"
                " ORDER BY t.id FOR UPDATE OF t",
                now - timedelta(seconds=interval),
            )
            for t in targets:
                rows = await con.fetch(
                    "SELECT id, kind, repo_id, resolved, message, raised_at FROM notify_alerts"
                    " WHERE target_id = $1 AND delivery_id IS NULL ORDER BY id",
                    t["id"],
                )
                alerts = [
                    DigestAlert(
                        r["id"],
                        r["kind"],
                        r["repo_id"],
                        r["resolved"],
                        r["message"],
                        r["raised_at"],
                    )
                    for r in rows
                ]
                delivery = await con.fetchval(
                    "INSERT INTO notify_deliveries (target_id, alerts, payload, created_at,"
                    " next_attempt_at) VALUES ($1, $2, $3::jsonb, $4, $4) RETURNING id",
                    t["id"],
                    len(alerts),
                    orjson.dumps(payload(t["kind"], alerts)).decode(),
                    now,
                )
                await con.execute(
                    "UPDATE notify_alerts SET delivery_id = $1 WHERE id = ANY($2::bigint[])",
                    delivery,
                    [a.id for a in alerts],
                )
                made += 1
        return made

    async def due_deliveries(self, now: datetime, limit: int = 20) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT d.id, d.attempts, d.payload, t.kind, t.url FROM notify_deliveries d"
            " JOIN notify_targets t ON t.id = d.target_id"
            " WHERE d.status = 'pending' AND d.next_attempt_at <= $1"
            " ORDER BY d.next_attempt_at, d.id LIMIT $2",
            now,
            limit,
        )
        return [
            {
                "id": r["id"],
                "attempts": r["attempts"],
                "payload": orjson.loads(r["payload"]),
                "kind": r["kind"],
                "url": r["url"],
            }
            for r in rows
        ]

    async def delivered(self, delivery_id: int) -> None:
        await self._pool.execute(
            "UPDATE notify_deliveries SET status = 'delivered', attempts = attempts + 1,"
            " delivered_at = now(), last_error = NULL WHERE id = $1",
            delivery_id,
        )

    async def attempt_failed(self, delivery_id: int, error: str, retry_at: datetime | None) -> None:
        """One failed attempt; `retry_at` None gives up (status `failed`)."""
        await self._pool.execute(
            "UPDATE notify_deliveries SET attempts = attempts + 1, last_error = $2,"
            " status = CASE WHEN $3::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,"
            " next_attempt_at = COALESCE($3::timestamptz, next_attempt_at) WHERE id = $1",
            delivery_id,
            error[:500],
            retry_at,
        )
