"""The repository registry (I/O): the control plane of polling. Repositories and their state,
poll leases, poll requests (LISTEN/NOTIFY), pause and resume, removals (the outbox of their
retractions) and the release-tag digests.

Metric tables are the sink's (processors/sink.py): removing a repository asks it to forget
the repository's rows, in the registry's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from metre.processors.database import Database
from metre.processors.sink import REPUBLISH, forget_repo

POLL_CHANNEL = "metre_poll"


class RepoExists(Exception):
    """A repository with this URL is already registered."""


@dataclass(frozen=True, slots=True)
class Removal:
    """A removed repository whose retractions are still to be published (the outbox)."""

    repo_id: int
    url: str
    shas: list[str]
    generation: int
    removed_at: datetime


@dataclass(frozen=True, slots=True)
class RepoRow:
    """A registered repository and its polling state; `commits` counts commits ingested."""

    id: int
    url: str
    branch: str | None
    state: str
    error: str | None
    head: str | None
    commits: int
    progress_done: int
    progress_total: int
    last_polled_at: datetime | None
    next_poll_at: datetime
    failures: int
    created_at: datetime
    mailmap_sha: str | None = None
    """The .mailmap blob the published history was mapped with (None: no .mailmap;
    `REPUBLISH` : the history must be published again, see there)."""
    paused_at: datetime | None = None
    """When the repository was paused (None: it is polled)."""
    failing_since: datetime | None = None
    """Start of the current run of failed polls (None: the last poll succeeded)."""
    webhook: bool = False
    """Whether a push-webhook secret is set (the secret itself is never read into a row)."""
    lagging_reason: str | None = None
    """Why the stored head is not applied yet, past the freshness bound (None: it is)."""
    url_policy: str | None = None
    """The URL policy decided at registration, as JSON (`UrlPolicy.to_json`); None: older row."""


_REPO_COLUMNS = """
    r.id, r.url, r.branch, r.state, r.error, r.head, r.commits,
    r.progress_done, r.progress_total, r.last_polled_at, r.next_poll_at, r.failures, r.created_at,
    r.mailmap_sha, r.paused_at, r.failing_since,
    r.webhook_secret IS NOT NULL AS webhook, r.lagging_reason
"""


_REPO_COLUMNS += ", r.url_policy::text AS url_policy\n"  # remote-safety (migration 0015)


def _repo(rec: asyncpg.Record) -> RepoRow:
    return RepoRow(**dict(rec))


class Registry(Database):
    """The repositories and their polling state."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        super().__init__(pool, dsn)
        self._listener: asyncpg.Connection | None = None
        self._poll_requested = asyncio.Event()

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        await super().close()

    async def add_repo(
        self, url: str, branch: str | None, url_policy: str | None = None
    ) -> RepoRow:
        """Register a repository, due for polling now; `RepoExists` if the URL is taken.
        `url_policy` (JSON) is the policy it was admitted under, which pollers then apply."""
        try:
            rid = await self._pool.fetchval(
                "INSERT INTO repos (url, branch, url_policy) VALUES ($1, $2, $3::jsonb) "
                "RETURNING id",
                url,
                branch,
                url_policy,
            )
        except asyncpg.UniqueViolationError as exc:
            raise RepoExists(url) from exc
        row = await self.get_repo(rid)
        assert row is not None
        return row

    async def get_repo(self, repo_id: int) -> RepoRow | None:
        rec = await self._pool.fetchrow(
            f"SELECT {_REPO_COLUMNS} FROM repos r WHERE r.id = $1",  # noqa: S608 (constant)
            repo_id,
        )
        return None if rec is None else _repo(rec)

    async def list_repos(self) -> list[RepoRow]:
        """Every repository, by id."""
        recs = await self._pool.fetch(
            f"SELECT {_REPO_COLUMNS} FROM repos r ORDER BY r.id"  # noqa: S608 (constant)
        )
        return [_repo(r) for r in recs]

    async def delete_repo(self, repo_id: int) -> bool:
        """Forget a repository with its commits and metrics; False if there was none.

        Commits, file changes and metric rows (no foreign key: migrations 0007, 0010, 0032)
        are deleted after the repository row, so a batch that wrote them and held the
        repository is committed by then, and a later batch finds no repository. The commits
        it held are recorded in the `repo_removals` outbox, in the same transaction, for a
        poller to publish their retractions (`pending_removals`, `finish_removal`).
        """
        async with self._pool.acquire() as con, con.transaction():
            # FOR UPDATE waits for batches holding the row (the sink's key-share lock), so the
            # commits read next are all there will ever be; later batches find no repository.
            rec = await con.fetchrow(
                "SELECT url, generation FROM repos WHERE id = $1 FOR UPDATE", repo_id
            )
            if rec is None:
                return False
            await con.execute(
                "INSERT INTO repo_removals (repo_id, url, shas, generation) "
                "SELECT $1, $2, COALESCE(array_agg(sha ORDER BY sha), '{}'), $3 "
                "FROM commits WHERE repo_id = $1 "
                "ON CONFLICT (repo_id) DO NOTHING",
                repo_id,
                rec["url"],
                rec["generation"] + 1,
            )
            await con.execute("DELETE FROM repos WHERE id = $1", repo_id)
            await forget_repo(con, repo_id)
        return True

    async def pending_removals(self, limit: int = 10) -> list[Removal]:
        """Removed repositories whose retractions are not yet published, oldest first."""
        recs = await self._pool.fetch(
            "SELECT repo_id, url, shas, generation, removed_at FROM repo_removals "
            "ORDER BY removed_at, repo_id LIMIT $1",
            limit,
        )
        return [Removal(**dict(r)) for r in recs]

    async def finish_removal(self, repo_id: int) -> None:
        """The removal's retractions are published: forget it."""
        await self._pool.execute("DELETE FROM repo_removals WHERE repo_id = $1", repo_id)

    async def registered_ids(self) -> set[int]:
        """The ids of every registered repository (to find mirrors of removed ones)."""
        return {r["id"] for r in await self._pool.fetch("SELECT id FROM repos")}

    async def pause_repo(self, repo_id: int) -> RepoRow | None:
        """Stop polling the repository (its metrics stay); None if there is none. A poll
        under way finishes, and leaves it paused."""
        rec = await self._pool.fetchrow(
            f"""
            UPDATE repos r SET paused_at = COALESCE(r.paused_at, now()), state = 'paused',
                poll_requested = false
            WHERE r.id = $1
            RETURNING {_REPO_COLUMNS}
            """,  # noqa: S608 (constant)
            repo_id,
        )
        return None if rec is None else _repo(rec)

    async def resume_repo(self, repo_id: int) -> RepoRow | None:
        """Poll a paused or abandoned repository again, at once (an abandoned one starts a
        new run of failures from zero; its error stays until a poll succeeds); for any other
        repository the same as `request_poll`. None if there is none."""
        async with self._pool.acquire() as con, con.transaction():
            rec = await con.fetchrow(
                f"""
                UPDATE repos r SET paused_at = NULL,
                    failures = CASE WHEN r.state = 'abandoned' THEN 0 ELSE r.failures END,
                    failing_since = CASE WHEN r.state = 'abandoned' THEN NULL
                                         ELSE r.failing_since END,
                    state = CASE WHEN r.state NOT IN ('paused', 'abandoned') THEN r.state
                                 WHEN r.lease_until > now() THEN 'polling'
                                 ELSE 'pending' END,
                    next_poll_at = now(), poll_requested = true
                WHERE r.id = $1
                RETURNING {_REPO_COLUMNS}
                """,  # noqa: S608 (constant)
                repo_id,
            )
            if rec is None:
                return None
            await con.execute(f"NOTIFY {POLL_CHANNEL}")
        return _repo(rec)

    async def request_poll(self, repo_id: int) -> bool:
        """Make the repository due now and wake waiting pollers; False if there is none."""
        async with self._pool.acquire() as con, con.transaction():
            status = await con.execute(
                "UPDATE repos SET next_poll_at = now(), poll_requested = true WHERE id = $1",
                repo_id,
            )
            if status != "UPDATE 1":
                return False
            await con.execute(f"NOTIFY {POLL_CHANNEL}")
        return True

    async def release_leases(self) -> int:
        """Free every poll lease: for a process that is the only poller (`metre up`), so a
        crash's leftover lease does not hold its repository until the lease runs out."""
        status: str = await self._pool.execute(
            "UPDATE repos SET lease_until = NULL, "
            "state = CASE WHEN state = 'polling' THEN 'pending' ELSE state END "
            "WHERE lease_until IS NOT NULL"
        )
        return int(status.split()[-1])

    async def claim_due_repo(self, lease_seconds: float) -> RepoRow | None:
        """Take one due repository whose lease is free or expired, for `lease_seconds`.

        Concurrent claimers never get the same repository (row locks, SKIP LOCKED). Paused
        and abandoned repositories are never due.
        """
        rec = await self._pool.fetchrow(
            f"""
            WITH due AS (
                SELECT id FROM repos
                WHERE next_poll_at <= now() AND (lease_until IS NULL OR lease_until < now())
                      AND paused_at IS NULL AND state <> 'abandoned'
                ORDER BY next_poll_at, id
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE repos r SET state = 'polling', poll_requested = false,
                lease_until = now() + make_interval(secs => $1),
                progress_done = 0, progress_total = 0
            FROM due WHERE r.id = due.id
            RETURNING {_REPO_COLUMNS}
            """,  # noqa: S608 (constant)
            float(lease_seconds),
        )
        return None if rec is None else _repo(rec)

    async def set_progress(
        self, repo_id: int, done: int, total: int, lease_seconds: float | None = None
    ) -> None:
        """Report a running poll's progress; with `lease_seconds`, also extend the poller's
        lease to at least that long from now (a long backfill keeps its repository)."""
        await self._pool.execute(
            """
            UPDATE repos SET progress_done = $2, progress_total = $3,
                lease_until = CASE WHEN $4::float8 IS NULL OR lease_until IS NULL
                                   THEN lease_until
                                   ELSE GREATEST(lease_until, now() + make_interval(secs => $4))
                              END
            WHERE id = $1
            """,
            repo_id,
            done,
            total,
            None if lease_seconds is None else float(lease_seconds),
        )

    async def set_polled(
        self,
        repo_id: int,
        head: str | None,
        next_poll_in: float,
        mailmap_sha: str | None = None,
        republished: bool = True,
    ) -> None:
        """A poll succeeded: idle, new head (and the .mailmap blob its history was mapped
        with), lease released, due again in `next_poll_in` s (at once if a poll was requested
        meanwhile). A `REPUBLISH` mark set while a poll that did not publish the whole
        history (`republished` false) was running is kept, for the next poll."""
        await self._pool.execute(
            """
            UPDATE repos SET state = CASE WHEN paused_at IS NULL THEN 'idle' ELSE 'paused' END,
                error = NULL, failures = 0, failing_since = NULL, head = $2,
                mailmap_sha = CASE WHEN NOT $5 AND mailmap_sha = $6 THEN mailmap_sha ELSE $4 END,
                last_polled_at = now(), lease_until = NULL,
                next_poll_at = CASE WHEN poll_requested THEN now()
                                    ELSE now() + make_interval(secs => $3) END,
                poll_requested = false
            WHERE id = $1
            """,
            repo_id,
            head,
            float(next_poll_in),
            mailmap_sha,
            republished,
            REPUBLISH,
        )

    async def set_branch(self, repo_id: int, branch: str | None) -> RepoRow | None:
        """Track `branch` (None: the remote's HEAD) from the next poll on, which retracts what
        left the history and publishes what is new; None if there is no such repository.
        The caller requests the poll."""
        status = await self._pool.execute(
            "UPDATE repos SET branch = $2 WHERE id = $1", repo_id, branch
        )
        if status != "UPDATE 1":
            return None
        return await self.get_repo(repo_id)

    async def set_failed(
        self, repo_id: int, error: str, retry_in: float, give_up_after: float | None = None
    ) -> str | None:
        """A poll failed: failed, one more failure, lease released, retried in `retry_in` s.

        With `give_up_after`, a repository whose polls have all failed for that many seconds
        is `abandoned` instead (never polled again until resumed; the error is kept). A paused
        repository stays paused. Returns the new state (None: no such repository).
        """
        state: str | None = await self._pool.fetchval(
            """
            UPDATE repos SET error = $2, failures = failures + 1,
                failing_since = COALESCE(failing_since, now()),
                state = CASE
                    WHEN paused_at IS NOT NULL THEN 'paused'
                    WHEN $4::float8 IS NOT NULL
                         AND now() - COALESCE(failing_since, now()) >= make_interval(secs => $4)
                         THEN 'abandoned'
                    ELSE 'failed' END,
                last_polled_at = now(), lease_until = NULL,
                next_poll_at = CASE WHEN poll_requested THEN now()
                                    ELSE now() + make_interval(secs => $3) END,
                poll_requested = false
            WHERE id = $1
            RETURNING state
            """,
            repo_id,
            error,
            float(retry_in),
            None if give_up_after is None else float(give_up_after),
        )
        return state

    async def wait_for_poll_request(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds; return early when `request_poll` notifies.

        Listens on a dedicated connection, opened on first use and reopened if it was lost.
        """
        if self._listener is None or self._listener.is_closed():
            self._listener = await asyncpg.connect(self._dsn)
            await self._listener.add_listener(POLL_CHANNEL, self._on_poll_request)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._poll_requested.wait(), timeout)
        self._poll_requested.clear()

    def _on_poll_request(self, *_: object) -> None:
        self._poll_requested.set()

    async def release_lease(self, repo_id: int) -> None:
        """A poller abandons its poll (shutdown): the lease is freed and the repository is due
        again at once, for any poller; its stored head is untouched."""
        await self._pool.execute(
            "UPDATE repos SET lease_until = NULL, next_poll_at = now(), "
            "state = CASE WHEN state = 'polling' THEN 'pending' ELSE state END WHERE id = $1",
            repo_id,
        )

    async def take_lease(
        self, repo_id: int, lease_seconds: float
    ) -> tuple[RepoRow, datetime] | None:
        """Hold repository `repo_id`'s poll lease (if free or expired) for `lease_seconds`,
        without changing its state or schedule: pollers skip it meanwhile (reconcile works
        under it). Returns the row as of the taking and the lease's end (the token for
        `extend_lease` and `end_lease`); None if a poller holds it or there is no such row."""
        rec = await self._pool.fetchrow(
            f"""
            UPDATE repos r SET lease_until = now() + make_interval(secs => $2)
            WHERE r.id = $1 AND (r.lease_until IS NULL OR r.lease_until < now())
            RETURNING {_REPO_COLUMNS}, r.lease_until AS held_until
            """,  # noqa: S608 (constant)
            repo_id,
            float(lease_seconds),
        )
        if rec is None:
            return None
        row = dict(rec)
        held_until: datetime = row.pop("held_until")
        return RepoRow(**row), held_until

    async def extend_lease(
        self, repo_id: int, held_until: datetime, lease_seconds: float
    ) -> datetime | None:
        """Extend a lease taken with `take_lease`; None if it is no longer ours (it ran out
        and a poller took it)."""
        until: datetime | None = await self._pool.fetchval(
            "UPDATE repos SET lease_until = now() + make_interval(secs => $3) "
            "WHERE id = $1 AND lease_until = $2 RETURNING lease_until",
            repo_id,
            held_until,
            float(lease_seconds),
        )
        return until

    async def end_lease(self, repo_id: int, held_until: datetime) -> None:
        """Free a lease taken with `take_lease`, if it is still ours."""
        await self._pool.execute(
            "UPDATE repos SET lease_until = NULL WHERE id = $1 AND lease_until = $2",
            repo_id,
            held_until,
        )

    async def release_digests(self, repo_id: int) -> tuple[str | None, str | None]:
        """(digest of the tags snapshot last published, of the one last applied); None: the
        empty set."""
        rec = await self._pool.fetchrow(
            "SELECT tags_published, tags_applied FROM repos WHERE id = $1", repo_id
        )
        return (None, None) if rec is None else (rec["tags_published"], rec["tags_applied"])

    async def set_release_published(self, repo_id: int, digest: str | None) -> None:
        """The bus acknowledged a tags snapshot with this digest."""
        await self._pool.execute(
            "UPDATE repos SET tags_published = $2 WHERE id = $1", repo_id, digest
        )
