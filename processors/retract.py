"""Retraction (I/O, inside the caller's transaction): undo the effect of commits that left the
tracked history.

For the commits named whose facts are present: lock and read the facts (commits and
file_changes rows), rebuild their `CommitEvent`s, delete the facts, fold them with the sink's
own folds (`spec.Writer.folder`) and merge the negated rows into the metric tables: retraction
is the negation of the same fold, not a second implementation. Counters are then exact; two
things a negation cannot undo are fixed from the remaining facts, in the same transaction:

- rows whose counters all dropped to 0 are deleted (a fresh ingest would have no such row:
  every metric table counts its contributing commits or file changes in some counter);
- least/greatest columns (an author's first and last commit and name) of the affected rows are
  recomputed by folding the remaining commits that can contribute to them
  (`CANDIDATES`: for author_totals the commits of that author, otherwise every commit of the
  repository), and rows with no contribution left are deleted.

Commits not present (never applied, or already retracted) are skipped: retraction is idempotent
by state, exactly like adding.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import timedelta, timezone
from typing import Any

import asyncpg
import orjson

from metre.contracts.events import BlobDelta, CommitEvent, FileChange, MergeFile, Person
from metre.processors.metrics import TABLES, Delta, fold, folds_of
from metre.processors.metrics.table import MetricTable

Connection = Any  # asyncpg.Connection or a pool's connection proxy

_LOCK_COMMITS = """
SELECT c.repo_id, c.sha, c.parents, c.author_name, c.author_email, c.author_time, c.author_tz,
       c.committer_name, c.committer_email, c.committer_time, c.committer_tz, c.summary,
       c.merge_files::text AS merge_files, c.author_time_raw, c.committer_time_raw
FROM commits c JOIN unnest($1::bigint[], $2::text[]) AS k(repo_id, sha)
     ON c.repo_id = k.repo_id AND c.sha = k.sha
ORDER BY c.repo_id, c.sha
FOR UPDATE OF c
"""

_SELECT_FILES = """
SELECT f.repo_id, f.sha, f.path, f.added, f.removed, f.is_binary, f.change,
       f.blob_bytes, f.blob_binary, f.blob_text_bytes, f.blob_code
FROM file_changes f JOIN unnest($1::bigint[], $2::text[]) AS k(repo_id, sha)
     ON f.repo_id = k.repo_id AND f.sha = k.sha
ORDER BY f.repo_id, f.sha, f.seq
"""

_DELETE_COMMITS = """
DELETE FROM commits c USING unnest($1::bigint[], $2::text[]) AS k(repo_id, sha)
WHERE c.repo_id = k.repo_id AND c.sha = k.sha
"""

# file_changes has no foreign key to commits (migration 0010): its rows go explicitly.
_DELETE_FILES = """
DELETE FROM file_changes f USING unnest($1::bigint[], $2::text[]) AS k(repo_id, sha)
WHERE f.repo_id = k.repo_id AND f.sha = k.sha
"""

_COMMIT_COLUMNS = """
c.repo_id, c.sha, c.parents, c.author_name, c.author_email, c.author_time, c.author_tz,
c.committer_name, c.committer_email, c.committer_time, c.committer_tz, c.summary,
c.merge_files::text AS merge_files, c.author_time_raw, c.committer_time_raw
"""

CANDIDATES: dict[str, str] = {
    "author_totals": f"""
SELECT {_COMMIT_COLUMNS}
FROM commits c
WHERE (c.repo_id, c.author_key) IN (
    SELECT k.repo_id, k.email FROM unnest($1::bigint[], $2::text[], $3::smallint[])
        AS k(repo_id, email, kind))
ORDER BY c.repo_id, c.sha
""",  # noqa: S608 (constant; the author's commits of every kind: the kind is the metric's)
    "file_stats": f"""
SELECT {_COMMIT_COLUMNS}
FROM commits c
WHERE (c.repo_id, c.sha) IN (
    SELECT f.repo_id, f.sha
    FROM file_changes f JOIN unnest($1::bigint[], $2::text[]) AS k(repo_id, path)
         ON f.repo_id = k.repo_id AND f.path = k.path)
ORDER BY c.repo_id, c.sha
""",  # noqa: S608 (constant)
}
"""Per table with least/greatest columns: the remaining commits that may contribute to the rows
whose keys are given as arrays (one per key column). Tables not listed use every commit of the
repositories concerned (exact, but reads the whole history)."""

_ALL_COMMITS = f"""
SELECT {_COMMIT_COLUMNS} FROM commits c WHERE c.repo_id = ANY($1::bigint[])
ORDER BY c.repo_id, c.sha
"""  # noqa: S608 (constant)


def _person(c: asyncpg.Record, who: str) -> Person:
    offset = timezone(timedelta(minutes=c[f"{who}_tz"]))
    return Person(
        c[f"{who}_name"],
        c[f"{who}_email"],
        c[f"{who}_time"].astimezone(offset),
        c[f"{who}_time_raw"],
    )


def _merge_file(m: list[Any]) -> MergeFile:
    """A stored merge file: [path, lines, presence] and, when known, [bytes, binary, text]
    and [code]."""
    blob = BlobDelta(m[3], m[4], m[5], m[6] if len(m) >= 7 else None) if len(m) >= 6 else None
    return MergeFile(m[0], m[1], m[2], blob)


async def load_events(con: Connection, commits: Sequence[asyncpg.Record]) -> list[CommitEvent]:
    """Rebuild the events of `commits` rows (and their file_changes) as they were applied."""
    if not commits:
        return []
    keys = [[c["repo_id"] for c in commits], [c["sha"] for c in commits]]
    files: dict[tuple[int, str], list[FileChange]] = {}
    for f in await con.fetch(_SELECT_FILES, *keys):
        blob = None
        if f["blob_bytes"] is not None:
            blob = BlobDelta(
                f["blob_bytes"], f["blob_binary"], f["blob_text_bytes"], f["blob_code"]
            )
        files.setdefault((f["repo_id"], f["sha"]), []).append(
            FileChange(f["path"], f["added"], f["removed"], f["is_binary"], f["change"], blob)
        )
    return [
        CommitEvent(
            repo_id=c["repo_id"],
            sha=c["sha"],
            parents=tuple(c["parents"]),
            author=_person(c, "author"),
            committer=_person(c, "committer"),
            summary=c["summary"],
            files=tuple(files.get((c["repo_id"], c["sha"]), ())),
            merge_files=tuple(_merge_file(m) for m in orjson.loads(c["merge_files"])),
        )
        for c in commits
    ]


async def retract(
    con: Connection, keys: Sequence[tuple[int, str]], upserts: dict[str, str]
) -> tuple[list[CommitEvent], list[Delta]]:
    """Retract the commits `keys` (repo_id, sha), sorted, in the caller's transaction.

    Returns the events of the commits that were present (now gone) and the merged negated
    deltas applied. `upserts` are the store's per-table upsert statements.
    """
    if not keys:
        return [], []
    arrays = [[k[0] for k in keys], [k[1] for k in keys]]
    rows = await con.fetch(_LOCK_COMMITS, *arrays)
    gone = await load_events(con, rows)
    if not gone:
        return [], []
    gone_keys = [e.repo_id for e in gone], [e.sha for e in gone]
    await con.execute(_DELETE_FILES, *gone_keys)
    await con.execute(_DELETE_COMMITS, *gone_keys)
    # The same folds as the sink's, negated: the rows a fresh ingest of `gone` would add.
    negated: list[Delta] = []
    for table, folded in sorted(fold(gone).items()):
        spec = TABLES[table]
        undo = {k: spec.negated(r) for k, r in folded.items()}
        touched = sorted(undo)
        await con.execute(upserts[table], *spec.rows_arrays(undo))
        await _delete_empty(con, spec, touched)
        if spec.extremes:
            await _recompute_extremes(con, spec, touched)
        negated.extend(spec.delta(k, undo[k]) for k in touched)
    return gone, negated


def _key_arrays(spec: MetricTable, keys: Sequence[tuple[Hashable, ...]]) -> list[list[Any]]:
    return [[k[i] for k in keys] for i in range(len(spec.key))]


def _key_join(spec: MetricTable, alias: str = "m", other: str = "k") -> str:
    return " AND ".join(f"{alias}.{c.name} = {other}.{c.name}" for c in spec.key)


def _unnest(spec: MetricTable, columns: Sequence[Any], alias: str) -> str:
    params = ", ".join(f"${i}::{c.sql_type}[]" for i, c in enumerate(columns, 1))
    names = ", ".join(c.name for c in columns)
    return f"unnest({params}) AS {alias}({names})"


async def _delete_empty(
    con: Connection, spec: MetricTable, touched: Sequence[tuple[Hashable, ...]]
) -> None:
    """Delete the touched rows whose counters are all 0."""
    if not spec.counters:
        return
    zero = " AND ".join(f"m.{c} = 0" for c in spec.counters)
    sql = (
        f"DELETE FROM {spec.name} m USING {_unnest(spec, spec.key, 'k')} "  # noqa: S608
        f"WHERE {_key_join(spec)} AND {zero}"
    )
    await con.execute(sql, *_key_arrays(spec, touched))


async def _recompute_extremes(
    con: Connection, spec: MetricTable, keys: Sequence[tuple[Hashable, ...]]
) -> None:
    """Set the least/greatest columns of the rows `keys` from the remaining facts; delete the
    rows no remaining commit contributes to."""
    if spec.name in CANDIDATES:
        rows = await con.fetch(CANDIDATES[spec.name], *_key_arrays(spec, keys))
    else:
        rows = await con.fetch(_ALL_COMMITS, sorted({int(k[0]) for k in keys}))  # type: ignore[call-overload]
    wanted = set(keys)
    events = await load_events(con, rows)
    folded = fold(events, folds_of([spec.name])).get(spec.name, {})
    fresh = {k: spec.delta(k, r) for k, r in folded.items()}
    present = [fresh[k] for k in sorted(wanted & fresh.keys())]
    missing = sorted(wanted - fresh.keys())
    if missing:
        sql = (
            f"DELETE FROM {spec.name} m USING {_unnest(spec, spec.key, 'k')} "  # noqa: S608
            f"WHERE {_key_join(spec)}"
        )
        await con.execute(sql, *_key_arrays(spec, missing))
    if present:
        columns = [*spec.key, *(c for x in spec.extremes for c in x.columns)]
        sets = ", ".join(f"{c.name} = u.{c.name}" for x in spec.extremes for c in x.columns)
        sql = (
            f"UPDATE {spec.name} m SET {sets} FROM {_unnest(spec, columns, 'u')} "  # noqa: S608
            f"WHERE {_key_join(spec, 'm', 'u')}"
        )
        values = [(*d.key, *(v for x in spec.extremes for v in x.values(d))) for d in present]
        await con.execute(sql, *(list(col) for col in zip(*values, strict=True)))
