"""The sink (I/O): the write path of commit events. One transaction per batch holds the facts
(commits, file_changes), the metric folds, the release tags, the dead letters and the
watermark of the repositories it changed; the processor commits its consumer offsets only
after it (processors/runner.py), as a Kafka Connect or quix-streams sink does. Applying a batch
again changes nothing: exactly once in effect.

Nothing else writes metric tables. Every write that more than one process may do at once is
safe to race: the commits primary key is the dedup set, metric rows are merged with
commutative upserts, and rows are always written in key order so concurrent writers never
deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

import asyncpg
import orjson

from ingest.events import CommitEvent, MergeFile, RetractEvent
from ingest.releases import TagsEvent
from processors import deadletters
from processors.database import Database
from processors.deadletters import DeadLetter
from processors.metrics import TABLES, fold
from processors.releasestore import apply_tags
from processors.retract import retract

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
a path has a backslash; `ingest.paths`): no blob has this name, so its next poll retracts every
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

# Moves the watermark of the repositories a batch changed and their count of commits (by the
# commits it added less those it retracted), locking their rows in id order.
_TOUCH_REPOS = """
UPDATE repos r SET watermark = GREATEST(clock_timestamp(), r.watermark),
                   generation = r.generation + 1, commits = r.commits + d.delta
FROM (SELECT id FROM repos WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE) s,
     unnest($1::bigint[], $2::bigint[]) AS d(id, delta)
WHERE r.id = s.id AND d.id = s.id
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


async def forget_repo(con: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], repo_id: int) -> None:
    """Delete a removed repository's file changes and metric rows (the caller's transaction,
    after the repository row: processors/registry.py `delete_repo`)."""
    # Neither metric rows nor file_changes have a foreign key (migrations 0007, 0010).
    for name in ("file_changes", *sorted(TABLES)):
        await con.execute(f"DELETE FROM {name} WHERE repo_id = $1", repo_id)  # noqa: S608


class Sink(Database):
    """Applies batches of events."""

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
                await deadletters.record(con, dead_letters)
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
        ids = sorted(commits.keys() | retracted.keys() | {*tagged})
        delta = [commits.get(i, 0) - retracted.get(i, 0) for i in ids]
        recs = await con.fetch(_TOUCH_REPOS, ids, delta)
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
