"""PostgreSQL access for metre (I/O): migrations, the repository registry, applying commit
events exactly once in effect, and the reads the API serves.

Every write that more than one process may do at once is safe to race: the commits primary key
is the dedup set, metric rows are merged with commutative upserts, and rows are always written
in key order so concurrent writers never deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from importlib import resources
from itertools import groupby
from typing import Any

import asyncpg
import orjson

from metre.contracts.events import CommitEvent, MergeFile, RetractEvent
from metre.contracts.tags import TagsEvent
from metre.processors.metrics import TABLES, fold
from metre.processors.rebuild import AFTER_MIGRATION
from metre.processors.releasestore import apply_tags
from metre.processors.retract import retract

POLL_CHANNEL = "metre_poll"
_MIGRATION_LOCK = 0x6D65747265  # "metre": serialises migrations across processes
_GRANULARITIES = frozenset(("day", "week", "month"))


class RepoExists(Exception):
    """A repository with this URL is already registered."""


class AmbiguousSha(Exception):
    """A short sha names more than one commit of the repository."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        super().__init__(prefix)
        self.prefix = prefix
        self.candidates = candidates


class SchemaTooNew(Exception):
    """The database holds migrations this code does not know: a newer metre migrated it."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(f"schema version {found} is newer than this code's {known}")
        self.found = found
        self.known = known


class SchemaNotCurrent(Exception):
    """The database's schema is not the one this code was written for (`kind`: `missing`,
    `older`, `newer` or `unknown`); `found`/`known` are the newest versions on each side."""

    def __init__(self, kind: str, found: int, known: int, unknown: Sequence[str] = ()) -> None:
        super().__init__(f"schema {kind}: database at {found}, code at {known}")
        self.kind = kind
        self.found = found
        self.known = known
        self.unknown = list(unknown)


def schema_problem(done: dict[int, str], known: dict[int, str]) -> SchemaNotCurrent | None:
    """What is wrong with a database that applied `done` (version -> file) for code that has
    `known`, or None when they are the same (pure)."""
    newest = max(known)
    if not done:
        return SchemaNotCurrent("missing", 0, newest)
    found = max(done)
    strange = sorted(n for v, n in done.items() if known.get(v) != n and v <= newest)
    if strange:
        return SchemaNotCurrent("unknown", found, newest, strange)
    if found > newest:
        return SchemaNotCurrent("newer", found, newest)
    if set(done) != set(known):
        return SchemaNotCurrent("older", found, newest)
    return None


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
    r.id, r.url, r.branch, r.state, r.error, r.head,
    COALESCE((SELECT sum(a.commits) FROM activity_daily a WHERE a.repo_id = r.id), 0)::bigint
        AS commits,
    r.progress_done, r.progress_total, r.last_polled_at, r.next_poll_at, r.failures, r.created_at,
    r.mailmap_sha, r.paused_at, r.failing_since,
    r.webhook_secret IS NOT NULL AS webhook, r.lagging_reason
"""


_REPO_COLUMNS += ", r.url_policy::text AS url_policy\n"  # remote-safety (migration 0015)


def _repo(rec: asyncpg.Record) -> RepoRow:
    return RepoRow(**dict(rec))


def _migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of processors/migrations/NNNN_*.sql, in version order."""
    found = []
    for f in (resources.files("processors") / "migrations").iterdir():
        if f.name.endswith(".sql") and f.name[:4].isdigit():
            found.append((int(f.name[:4]), f.name, f.read_text(encoding="utf-8")))
    return sorted(found)


_INSERT_COMMITS = """
INSERT INTO commits (repo_id, sha, parents, author_name, author_email, author_time, author_tz,
                     committer_name, committer_email, committer_time, committer_tz,
                     summary, is_merge, files, added, removed, merge_files,
                     author_time_raw, committer_time_raw)
SELECT t.repo_id, t.sha, string_to_array(t.parents, ' '), t.an, t.ae, t.at, t.atz,
       t.cn, t.ce, t.ct, t.ctz, t.summary, t.is_merge, t.files, t.added, t.removed,
       t.merge_files::jsonb, t.araw, t.craw
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
            $7::int[], $8::text[], $9::text[], $10::timestamptz[], $11::int[], $12::text[],
            $13::bool[], $14::int[], $15::bigint[], $16::bigint[], $17::text[], $18::text[],
            $19::text[])
     AS t(repo_id, sha, parents, an, ae, at, atz, cn, ce, ct, ctz, summary, is_merge, files,
          added, removed, merge_files, araw, craw)
WHERE EXISTS (SELECT 1 FROM repos r WHERE r.id = t.repo_id)
ORDER BY t.repo_id, t.sha
ON CONFLICT (repo_id, sha) DO NOTHING
RETURNING repo_id, sha
"""

REPUBLISH = "republish"
"""`repos.mailmap_sha` of a repository whose stored paths may be in path form 1 (ambiguous where
a path has a backslash; `metre.contracts.paths`): no blob has this name, so its next poll retracts every
published commit and publishes the whole history again, as for a new .mailmap. Set by
migration 0017 and by a processor that applies a form-1 event with a backslash in a path."""

_FLAG_REPUBLISH = "UPDATE repos SET mailmap_sha = $2 WHERE id = ANY($1::bigint[])"

_INSERT_FILES = """
INSERT INTO file_changes (repo_id, sha, seq, path, added, removed, is_binary, change,
                          blob_bytes, blob_binary, blob_text_bytes, blob_code)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::bigint[],
                     $6::bigint[], $7::bool[], $8::text[], $9::bigint[], $10::smallint[],
                     $11::bigint[], $12::bigint[])
"""

# One upsert per metric table, built from its spec (processors/metrics/*: TABLES); rows arrive
# merged and are locked in key order.
_UPSERTS: dict[str, str] = {name: t.upsert_sql() for name, t in TABLES.items()}

# Moves the watermark of the repositories a batch changed, locking their rows in id order.
_TOUCH_REPOS = """
UPDATE repos r SET watermark = GREATEST(clock_timestamp(), r.watermark),
                   generation = r.generation + 1
FROM (SELECT id FROM repos WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE) s
WHERE r.id = s.id
RETURNING r.id, r.head, r.watermark, r.generation
"""


@dataclass(frozen=True, slots=True)
class RepoChange:
    """What one applied batch changed for one repository: new commits, the metric tables
    written, and the repository's head, watermark and generation after the batch."""

    repo_id: int
    commits: int
    tables: frozenset[str]
    head: str | None
    watermark: datetime
    generation: int
    retracted: int = 0
    """Commits retracted by the batch (their facts deleted, their deltas negated)."""
    tags: int = 0
    """Tags snapshots applied (1 when the batch changed the repository's release tags)."""


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


def _offset_minutes(t: datetime) -> int:
    off = t.utcoffset()
    return 0 if off is None else int(off.total_seconds() // 60)


def _commit_arrays(events: Sequence[CommitEvent]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(19)]
    for e in events:
        a, c = e.author, e.committer
        merge_files = orjson.dumps([_merge_file_row(m) for m in e.merge_files])
        row = (
            e.repo_id, e.sha, " ".join(e.parents), a.name, a.email, a.time,
            _offset_minutes(a.time), c.name, c.email, c.time, _offset_minutes(c.time),
            e.summary, e.is_merge, len(e.files), e.added, e.removed, merge_files.decode(),
            a.time_raw, c.time_raw,
        )  # fmt: skip
        for col, v in zip(cols, row, strict=True):
            col.append(v)
    return cols


def _merge_file_row(m: MergeFile) -> tuple[Any, ...]:
    """A merge file as stored in commits.merge_files: [path, lines, presence], then the blob
    measures [bytes, binary, text bytes] when the event had them, then [code] when it had."""
    b = m.blob
    if b is None:
        return (m.path, m.lines, m.presence)
    if b.code is None:
        return (m.path, m.lines, m.presence, b.bytes, b.binary, b.text_bytes)
    return (m.path, m.lines, m.presence, b.bytes, b.binary, b.text_bytes, b.code)


def _file_arrays(events: Iterable[CommitEvent]) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(12)]
    for e in events:
        for seq, f in enumerate(e.files):
            b = f.blob
            row = (
                e.repo_id, e.sha, seq, f.path, f.added, f.removed, f.binary, f.change,
                None if b is None else b.bytes, None if b is None else b.binary,
                None if b is None else b.text_bytes, None if b is None else b.code,
            )  # fmt: skip
            for col, v in zip(cols, row, strict=True):
                col.append(v)
    return cols


def _iso(t: datetime, offset_minutes: int) -> str:
    return t.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat()


class PgStore:
    """metre's PostgreSQL over an asyncpg pool. Build with `await PgStore.connect(dsn)`."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self._pool = pool
        self._dsn = dsn
        self._listener: asyncpg.Connection | None = None
        self._poll_requested = asyncio.Event()

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> PgStore:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        return cls(pool, dsn)

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool, for read modules (processors/reads.py)."""
        return self._pool

    async def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        await self._pool.close()

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one transaction; returns the files applied.

        An advisory lock makes processes that start at the same time take turns. A database
        migrated by a newer metre (a version this code does not know) raises `SchemaTooNew`
        and changes nothing.
        """
        applied: list[str] = []
        async with self._pool.acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await con.fetch("SELECT version FROM schema_migrations")}
            known = _migrations()
            newest = max(v for v, _, _ in known)
            if done and max(done) > newest:
                raise SchemaTooNew(max(done), newest)
            steps = []
            for version, name, sql in known:
                if version in done:
                    continue
                await con.execute(sql)
                # A step SQL cannot do (processors/rebuild.py), run after the last file: it is
                # today's code, which reads and writes today's columns. Steps are rebuilds of
                # tables from the facts, so running one later in the transaction is the same.
                step = AFTER_MIGRATION.get(version)
                if step is not None and step not in steps:
                    steps.append(step)
                await con.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
                applied.append(name)
            for step in steps:
                await step(con)
        return applied

    async def check_schema(self) -> None:
        """Raise `SchemaNotCurrent` unless the database holds exactly this code's migrations
        (distributed roles never migrate: `metre migrate` does, once, before them)."""
        known = {version: name for version, name, _ in _migrations()}
        async with self._pool.acquire() as con:
            exists = await con.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
            rows = await con.fetch("SELECT version, name FROM schema_migrations") if exists else []
        done = {int(r["version"]): str(r["name"]) for r in rows}
        problem = schema_problem(done, known)
        if problem is not None:
            raise problem

    async def ping(self) -> bool:
        """Whether the database answers a query within 2 seconds."""
        try:
            async with asyncio.timeout(2):
                return bool(await self._pool.fetchval("SELECT 1") == 1)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    # -- the repository registry ------------------------------------------------------------

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

        Commits go by cascade; file changes and metric rows (no foreign key: migrations 0007,
        0010) are deleted after the repository row, so a batch that wrote them and held the
        repository is committed by then, and a later batch finds no repository. The commits
        it held are recorded in the `repo_removals` outbox, in the same transaction, for a
        poller to publish their retractions (`pending_removals`, `finish_removal`).
        """
        async with self._pool.acquire() as con, con.transaction():
            # FOR UPDATE waits for batches holding the row (their foreign key check), so the
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
            # Neither metric rows nor file_changes have a foreign key (migrations 0007, 0010).
            for name in ("file_changes", *sorted(TABLES)):
                await con.execute(f"DELETE FROM {name} WHERE repo_id = $1", repo_id)  # noqa: S608
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

    # -- applying events --------------------------------------------------------------------

    async def apply(self, events: Sequence[CommitEvent | RetractEvent | TagsEvent]) -> int:
        """Apply events in one transaction, in order; returns how many had an effect.

        A commit event acts only if the commit is absent, a retraction only if it is present
        (state-based: each is idempotent, and add, retract, add again works). Events of
        unregistered repositories change nothing. Safe to run concurrently with overlapping
        batches.
        """
        return sum(c.commits + c.retracted + c.tags for c in await self.apply_changes(events))

    async def apply_changes(
        self,
        events: Sequence[CommitEvent | RetractEvent | TagsEvent],
        dead_letters: Sequence[DeadLetter] = (),
    ) -> list[RepoChange]:
        """`apply`, returning what changed per repository (by id; none if nothing changed).

        `dead_letters` (the batch's poison records) are recorded in the same transaction.
        """
        tags = [e for e in events if isinstance(e, TagsEvent)]
        history = [e for e in events if not isinstance(e, TagsEvent)]
        runs: list[list[CommitEvent] | list[RetractEvent]] = []
        for _, run in groupby(history, key=lambda e: isinstance(e, RetractEvent)):
            # Within a run of one type the order does not matter: dedup, sort by key.
            unique: dict[tuple[int, str], Any] = {}
            for e in run:
                unique.setdefault((e.repo_id, e.sha), e)
            ordered = [unique[k] for k in sorted(unique)]
            runs.append(ordered)
        if not runs and not dead_letters and not tags:
            return []
        for attempt in range(3):
            try:
                return await self._apply(runs, dead_letters, tags)
            except asyncpg.ForeignKeyViolationError:
                # A repository was deleted while its events were in flight: its events are now
                # filtered out by the next attempt.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _apply(
        self,
        runs: Sequence[list[CommitEvent] | list[RetractEvent]],
        dead_letters: Sequence[DeadLetter] = (),
        tags: Sequence[TagsEvent] = (),
    ) -> list[RepoChange]:
        added: list[CommitEvent] = []
        gone: list[CommitEvent] = []
        tables: dict[int, set[str]] = {}  # repo id -> the metric tables written
        async with self._pool.acquire() as con, con.transaction():
            if dead_letters:
                await con.execute(_INSERT_DEAD_LETTERS, *_dead_letter_arrays(dead_letters))
            for run in runs:
                if run and isinstance(run[0], RetractEvent):
                    retracted, negated = await retract(
                        con, [(e.repo_id, e.sha) for e in run], _UPSERTS
                    )
                    gone += retracted
                    for e in retracted:
                        tables.setdefault(e.repo_id, set()).add("commits")
                        if e.files:
                            tables.setdefault(e.repo_id, set()).add("file_changes")
                    for d in negated:
                        tables.setdefault(int(d.key[0]), set()).add(d.table)  # type: ignore[call-overload]
                else:
                    fresh = await self._add(con, run, tables)  # type: ignore[arg-type]
                    added += fresh
            tagged = await apply_tags(con, tags) if tags else []
            for rid in tagged:
                tables.setdefault(rid, set()).add("release_tags")
            if not added and not gone and not tagged:
                return []
            return await self._touch(con, added, tables, gone, tagged)

    @staticmethod
    async def _add(
        con: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
        ordered: Sequence[CommitEvent],
        tables: dict[int, set[str]],
    ) -> list[CommitEvent]:
        """Insert the facts of the commits not yet present and merge their metric rows; adds
        the tables written to `tables` (repo id -> names)."""
        inserted = await con.fetch(_INSERT_COMMITS, *_commit_arrays(ordered))
        new = {(r["repo_id"], r["sha"]) for r in inserted}
        fresh = [e for e in ordered if (e.repo_id, e.sha) in new]
        if not fresh:
            return []
        for e in fresh:  # metrics read straight from the commit facts (releases) change too
            tables.setdefault(e.repo_id, set()).add("commits")
        files = _file_arrays(fresh)
        if files[0]:
            await con.execute(_INSERT_FILES, *files)
            # Metrics read straight from the facts (coupling) change with them.
            for rid in set(files[0]):
                tables.setdefault(int(rid), set()).add("file_changes")
        rows = fold(fresh)
        # Tables in name order, each one's rows in key order (the upsert sorts): concurrent
        # writers lock rows in the same order.
        for name in sorted(rows):
            for rid in {k[0] for k in rows[name]}:
                tables.setdefault(int(rid), set()).add(name)  # type: ignore[call-overload]
            await con.execute(_UPSERTS[name], *TABLES[name].rows_arrays(rows[name]))
        return fresh

    @staticmethod
    async def _touch(
        con: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
        fresh: Sequence[CommitEvent],
        tables: dict[int, set[str]],
        gone: Sequence[CommitEvent] = (),
        tagged: Sequence[int] = (),
    ) -> list[RepoChange]:
        """Move the watermark of every repository the batch changed (same transaction)."""
        commits: dict[int, int] = {}
        for e in fresh:
            commits[e.repo_id] = commits.get(e.repo_id, 0) + 1
        retracted: dict[int, int] = {}
        for e in gone:
            retracted[e.repo_id] = retracted.get(e.repo_id, 0) + 1
        recs = await con.fetch(_TOUCH_REPOS, sorted(commits.keys() | retracted.keys() | {*tagged}))
        # After _TOUCH_REPOS: its rows are locked already, in id order (no new lock waits).
        # Paths that may be ambiguous (form 1), or files without blob measures or lines of
        # code (an earlier poller; `lacks_code` holds whenever `lacks_blobs` does): the history
        # is published again.
        ambiguous = sorted({e.repo_id for e in fresh if e.ambiguous_paths or e.lacks_code})
        if ambiguous:
            await con.execute(_FLAG_REPUBLISH, ambiguous, REPUBLISH)
        return [
            RepoChange(r["id"], commits.get(r["id"], 0), frozenset(tables.get(r["id"], ())),
                       r["head"], r["watermark"], r["generation"], retracted.get(r["id"], 0),
                       int(r["id"] in tagged))
            for r in sorted(recs, key=lambda r: r["id"])
        ]  # fmt: skip

    # -- reads for the API ------------------------------------------------------------------

    async def get_commit(self, repo_id: int, sha: str) -> dict[str, Any] | None:
        """One commit with its files; times in ISO 8601 with the person's own UTC offset.

        `sha` may be a prefix, as git takes one: the commit it names uniquely, or
        `AmbiguousSha` with (at most 10 of) the commits it could name."""
        async with self._pool.acquire() as con:
            c = await con.fetchrow(
                "SELECT * FROM commits WHERE repo_id = $1 AND sha = $2", repo_id, sha
            )
            if c is None:
                found = await con.fetch(
                    "SELECT sha FROM commits WHERE repo_id = $1 AND left(sha, length($2)) = $2"
                    " ORDER BY sha LIMIT 11",
                    repo_id,
                    sha,
                )
                if len(found) > 1:
                    raise AmbiguousSha(sha, [r["sha"] for r in found[:10]])
                if not found:
                    return None
                sha = found[0]["sha"]
                c = await con.fetchrow(
                    "SELECT * FROM commits WHERE repo_id = $1 AND sha = $2", repo_id, sha
                )
                assert c is not None
            files = await con.fetch(
                "SELECT path, added, removed, is_binary AS binary, change FROM file_changes"
                " WHERE repo_id = $1 AND sha = $2 ORDER BY seq",
                repo_id,
                sha,
            )
        return {
            "sha": c["sha"],
            "author": {
                "name": c["author_name"],
                "email": c["author_email"],
                "time": _iso(c["author_time"], c["author_tz"]),
                "time_raw": c["author_time_raw"],
            },
            "committer": {
                "name": c["committer_name"],
                "email": c["committer_email"],
                "time": _iso(c["committer_time"], c["committer_tz"]),
                "time_raw": c["committer_time_raw"],
            },
            "parents": list(c["parents"]),
            "summary": c["summary"],
            "is_merge": c["is_merge"],
            "files": [dict(f) for f in files],
        }

    async def activity(
        self, repo_id: int, start: date | None, end: date | None, granularity: str
    ) -> list[dict[str, Any]]:
        """Activity per day|week|month (UTC author dates; weeks start on the ISO Monday).

        `start`/`end` bound days, inclusive; periods without commits are left out.
        """
        if granularity not in _GRANULARITIES:
            raise ValueError(f"granularity must be day, week or month, not {granularity!r}")
        recs = await self._pool.fetch(
            """
            SELECT date_trunc($4, day::timestamp)::date AS period,
                   sum(commits)::bigint AS commits, sum(merges)::bigint AS merges,
                   sum(added)::bigint AS added, sum(removed)::bigint AS removed
            FROM activity_daily
            WHERE repo_id = $1 AND ($2::date IS NULL OR day >= $2)
                  AND ($3::date IS NULL OR day <= $3)
            GROUP BY 1 HAVING sum(commits) > 0
            ORDER BY 1
            """,
            repo_id,
            start,
            end,
            granularity,
        )
        return [
            {
                "period": r["period"].isoformat(),
                "commits": r["commits"],
                "merges": r["merges"],
                "added": r["added"],
                "removed": r["removed"],
            }
            for r in recs
        ]

    async def authors(self, repo_id: int) -> list[dict[str, Any]]:
        """Per-author totals by commits descending, then email; times ISO 8601 in UTC. Every
        commit kind counts (processors/reads.py `authors` applies a policy)."""
        recs = await self._pool.fetch(
            """
            SELECT email, sum(commits)::bigint AS commits, sum(added)::bigint AS added,
                   sum(removed)::bigint AS removed, min(first_commit_at) AS first_commit_at,
                   max(last_commit_at) AS last_commit_at,
                   (array_agg(name ORDER BY last_commit_at DESC, name COLLATE "C" DESC))[1]
                       AS name
            FROM author_totals WHERE repo_id = $1 AND commits > 0
            GROUP BY email
            ORDER BY commits DESC, email COLLATE "C"
            """,
            repo_id,
        )
        return [
            {
                "name": r["name"],
                "email": r["email"],
                "commits": r["commits"],
                "added": r["added"],
                "removed": r["removed"],
                "first_commit_at": r["first_commit_at"].astimezone(UTC).isoformat(),
                "last_commit_at": r["last_commit_at"].astimezone(UTC).isoformat(),
            }
            for r in recs
        ]

    # -- anti-entropy -----------------------------------------------------------------------

    async def commit_count(self, repo_id: int) -> int:
        """Commits of the repository whose facts are stored (what reconcile compares first)."""
        n: int = await self._pool.fetchval(
            "SELECT count(*) FROM commits WHERE repo_id = $1", repo_id
        )
        return n

    async def commit_shas(self, repo_id: int) -> set[str]:
        """Every commit of the repository whose facts are stored."""
        recs = await self._pool.fetch("SELECT sha FROM commits WHERE repo_id = $1", repo_id)
        return {r["sha"] for r in recs}

    async def commit_digest(self, repo_id: int) -> tuple[int, int]:
        """(count, XOR of the first 64 bits of every sha) of the stored commits: equal to the
        mirror's digest means the same set, barring a 2^-64 accident (reconcile's fast path)."""
        rec = await self._pool.fetchrow(
            "SELECT count(*) AS n, COALESCE(bit_xor(('x' || substr(sha, 1, 16))::bit(64)"
            "::bigint), 0) AS x FROM commits WHERE repo_id = $1",
            repo_id,
        )
        assert rec is not None
        return int(rec["n"]), int(rec["x"]) & 0xFFFFFFFFFFFFFFFF

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

    # -- the pipeline's own state -----------------------------------------------------------

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

    # -- release tags (ingest/releasepoll.py) -----------------------------------------------

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
