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

from metre.contracts.events import CommitEvent, MergeFile, RetractEvent
from metre.contracts.tags import TagsEvent
from metre.processors import deadletters, setfolds
from metre.processors.database import Database
from metre.processors.deadletters import DeadLetter
from metre.processors.emailkey import email_key
from metre.processors.metrics import TABLES, Fold, fold, folds_of
from metre.processors.metrics.languages import counted_language
from metre.processors.releasestore import apply_tags
from metre.processors.retract import retract

REPUBLISH = "republish"
"""`repos.mailmap_sha` of a repository whose stored paths may be in path form 1 (ambiguous where
a path has a backslash; `metre.contracts.paths`): no blob has this name, so its next poll
retracts every published commit and publishes the whole history again, as for a new .mailmap. Set by
migration 0017 and by a processor that applies a form-1 event with a backslash in a path."""

_LOCK_REPOS = "SELECT id FROM repos WHERE id = ANY($1::bigint[]) ORDER BY id FOR KEY SHARE"

_FLAG_REPUBLISH = "UPDATE repos SET mailmap_sha = $2 WHERE id = ANY($1::bigint[])"

# One upsert per metric table, built from its spec (processors/metrics/*: TABLES), for rows
# folded in Python (retraction's negated deltas, and any table without a set-based fold); rows
# arrive merged and are locked in key order.
_UPSERTS: dict[str, str] = {name: t.upsert_sql() for name, t in TABLES.items()}

# The set-based fold of each metric table (processors/setfolds.py), and the tables without one,
# folded in Python by the metric modules that write them.
_FOLDS: dict[str, str] = {name: setfolds.fold_sql(name) for name in setfolds.FOLDS}
_PYTHON_FOLDED: frozenset[str] = frozenset(TABLES.keys() - setfolds.FOLDS.keys())
_PYTHON_FOLDS: tuple[Fold, ...] = folds_of(set(_PYTHON_FOLDED)) if _PYTHON_FOLDED else ()

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


def _merge_file_row(m: MergeFile) -> tuple[Any, ...]:
    """A merge file as stored in commits.merge_files: [path, lines, presence], then the blob
    measures [bytes, binary, text bytes] when the event had them, then [code] when it had."""
    b = m.blob
    if b is None:
        return (m.path, m.lines, m.presence)
    if b.code is None:
        return (m.path, m.lines, m.presence, b.bytes, b.binary, b.text_bytes)
    return (m.path, m.lines, m.presence, b.bytes, b.binary, b.text_bytes, b.code)


@dataclass(slots=True)
class Staged:
    """A run of commit events as the records copied into the staging tables
    (processors/setfolds.py: `COMMIT_COLUMNS`, `FILE_COLUMNS`, `MERGE_FILE_COLUMNS`), and per
    source of the set-based folds the repositories that have rows of it."""

    commits: list[tuple[Any, ...]]
    files: list[tuple[Any, ...]]
    merge_files: list[tuple[Any, ...]]
    sources: dict[str, set[int]]


def stage(events: Iterable[CommitEvent]) -> Staged:
    """The staging records of `events`: their facts, with the inputs SQL cannot compute
    itself (the author's identity key, each path's counted language, the local weekday and
    hour) computed here, once."""
    commits: list[tuple[Any, ...]] = []
    files: list[tuple[Any, ...]] = []
    merges: list[tuple[Any, ...]] = []
    with_files: set[int] = set()
    file_languages: set[int] = set()
    with_merges: set[int] = set()
    merge_languages: set[int] = set()
    for e in events:
        a, c, rid, sha = e.author, e.committer, e.repo_id, e.sha
        key, t = email_key(a.email), a.time
        added = removed = 0
        for seq, f in enumerate(e.files):
            b = f.blob
            lang = counted_language(f.path)
            if lang is not None:
                file_languages.add(rid)
            added += f.added
            removed += f.removed
            if b is None:
                files.append(
                    (rid, sha, seq, f.path, f.added, f.removed, f.binary, f.change,
                     None, None, None, None, lang, key, t)
                )  # fmt: skip
            else:
                files.append(
                    (rid, sha, seq, f.path, f.added, f.removed, f.binary, f.change,
                     b.bytes, b.binary, b.text_bytes, b.code, lang, key, t)
                )  # fmt: skip
        if e.files:
            with_files.add(rid)
        stored = []
        for m in e.merge_files:
            b = m.blob
            lang = counted_language(m.path)
            if lang is not None:
                merge_languages.add(rid)
            stored.append(_merge_file_row(m))
            if b is None:
                merges.append((rid, sha, m.path, m.lines, m.presence, None, None, None, None, lang))
            else:
                merges.append(
                    (rid, sha, m.path, m.lines, m.presence, b.bytes, b.binary, b.text_bytes,
                     b.code, lang)
                )  # fmt: skip
        if e.merge_files:
            with_merges.add(rid)
        commits.append(
            (rid, sha, list(e.parents), a.name, a.email, key, t,
             _offset_minutes(t), c.name, c.email, c.time, _offset_minutes(c.time), e.summary,
             len(e.parents) > 1, len(e.files), added, removed, orjson.dumps(stored).decode(),
             a.time_raw, c.time_raw, t.weekday(), t.hour)
        )  # fmt: skip
    sources = {
        "files": with_files,
        "file_languages": file_languages,
        "merge_files": with_merges,
        "merge_languages": merge_languages,
    }
    return Staged(commits, files, merges, sources)


async def forget_repo(con: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], repo_id: int) -> None:
    """Delete a removed repository's facts and metric rows (the caller's transaction, after
    the repository row: processors/registry.py `delete_repo`)."""
    # No foreign key cascades to them (migrations 0007, 0010, 0032).
    for name in ("commits", "file_changes", *sorted(TABLES)):
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
                # A repository was deleted while its tags snapshot was in flight (release_tags
                # keeps its foreign key): the next attempt filters it out.
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
        staged = False  # whether a run of commits used the staging tables already
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
                    fresh = await self._add(con, run, tables, staged)  # type: ignore[arg-type]
                    staged = True
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
        again: bool = False,
    ) -> list[CommitEvent]:
        """Stage the run's facts, insert those of the commits not yet present and fold their
        metric rows in SQL (processors/setfolds.py); adds the tables written to `tables`
        (repo id -> names). `again`: an earlier run of the transaction staged rows."""
        staged = stage(ordered)
        await con.execute(setfolds.CLEAR if again else setfolds.STAGE)
        await con.copy_records_to_table(
            "stage_commits", records=staged.commits, columns=setfolds.COMMIT_COLUMNS
        )
        if staged.files:
            await con.copy_records_to_table(
                "stage_files", records=staged.files, columns=setfolds.FILE_COLUMNS
            )
        if staged.merge_files:
            await con.copy_records_to_table(
                "stage_merge_files", records=staged.merge_files, columns=setfolds.MERGE_FILE_COLUMNS
            )
        # The lock a foreign key check would take per commit, once per repository (migration
        # 0032): a removal of the repository waits for this transaction.
        await con.execute(_LOCK_REPOS, sorted({e.repo_id for e in ordered}))
        inserted = await con.fetch(setfolds.DEDUP)
        if not inserted:
            return []
        new = {(r["repo_id"], r["sha"]) for r in inserted}
        fresh = [e for e in ordered if (e.repo_id, e.sha) in new]
        if len(fresh) < len(ordered):
            # Some were stored already: their files and merge files leave the stage, and the
            # repositories that have rows of each source are those of the fresh commits.
            await con.execute(setfolds.DROP_STALE)
            staged = stage(fresh)
        repos = {e.repo_id for e in fresh}
        sources = {"commits": repos, **staged.sources}
        for rid in repos:  # metrics read straight from the commit facts (releases) change too
            tables.setdefault(rid, set()).add("commits")
        statements = []
        if staged.files:
            statements.append(setfolds.INSERT_FILES)
            # Metrics read straight from the facts (coupling) change with them.
            for rid in sources["files"]:
                tables.setdefault(rid, set()).add("file_changes")
        # Tables in name order, each one's rows in key order (the fold sorts): concurrent
        # writers lock rows in the same order.
        for name in sorted(setfolds.FOLDS):
            written = sources[setfolds.FOLDS[name].source]
            if written:
                statements.append(_FOLDS[name])
                for rid in written:
                    tables.setdefault(rid, set()).add(name)
        # None takes parameters: one round trip runs them all, in order.
        await con.execute(";\n".join(statements))
        if _PYTHON_FOLDED:
            rows = fold(fresh, _PYTHON_FOLDS)
            for name in sorted(rows.keys() & _PYTHON_FOLDED):
                for key in rows[name]:
                    tables.setdefault(int(key[0]), set()).add(name)  # type: ignore[call-overload]
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
