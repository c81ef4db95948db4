"""The registry's side of push webhooks (I/O): per-repository secrets and seen deliveries.

Kept apart from processors/registry.py: only the webhook route and repository registration use
it. Secrets are stored as given (an HMAC needs the key; migration 0018) and never read back
except to check a signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from metre.processors.database import Database
from metre.processors.registry import POLL_CHANNEL


@dataclass(frozen=True, slots=True)
class HookTarget:
    """A registered repository as a webhook sees it."""

    id: int
    url: str
    secret: str | None
    state: str


async def set_secret(store: Database, repo_id: int, secret: str | None) -> bool:
    """Set (None: clear) the repository's webhook secret; False if there is no repository."""
    status: str = await store.pool.execute(
        "UPDATE repos SET webhook_secret = $2 WHERE id = $1", repo_id, secret
    )
    return status == "UPDATE 1"


async def targets(store: Database) -> list[HookTarget]:
    """Every registered repository, with its secret, for matching a payload's URLs."""
    recs = await store.pool.fetch("SELECT id, url, webhook_secret, state FROM repos ORDER BY id")
    return [HookTarget(r["id"], r["url"], r["webhook_secret"], r["state"]) for r in recs]


async def accept_delivery(
    store: Database, provider: str, delivery: str, window: float, repo_ids: list[int]
) -> datetime | None:
    """Remember a delivery id and request a poll of `repo_ids`, in one transaction.

    Returns None when the delivery is new (or was seen more than `window` seconds ago);
    otherwise when it was first received, and nothing changed (a replay polls nothing).
    Deliveries older than the window are forgotten on the way. The poll request is
    `Registry.request_poll`'s: due now, and pollers woken by NOTIFY at commit.
    """
    async with store.pool.acquire() as con, con.transaction():
        await con.execute(
            "DELETE FROM webhook_deliveries WHERE received_at < now() - make_interval(secs => $1)",
            float(window),
        )
        # A no-op update on conflict so the row comes back either way; xmax = 0 marks a
        # row this statement inserted.
        rec = await con.fetchrow(
            "INSERT INTO webhook_deliveries AS d (provider, delivery_id) VALUES ($1, $2) "
            "ON CONFLICT (provider, delivery_id) DO UPDATE SET received_at = d.received_at "
            "RETURNING (d.xmax = 0) AS inserted, d.received_at",
            provider,
            delivery,
        )
        assert rec is not None  # the statement returns its row in both branches
        if not rec["inserted"]:
            seen: datetime = rec["received_at"]
            return seen
        await con.execute(
            "UPDATE repos SET next_poll_at = now(), poll_requested = true "
            "WHERE id = ANY($1::bigint[])",
            repo_ids,
        )
        await con.execute(f"NOTIFY {POLL_CHANNEL}")
    return None
