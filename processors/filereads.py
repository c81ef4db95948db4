"""Reads of the per-file and coupling tables for the API (I/O: PostgreSQL queries, and the
path rule they filter by).

Derivations that are not plain SQL (degree of authorship, truck factor) are pure functions in
processors/metrics/ownership.py; these only fetch their inputs. Text is ordered by code point
(COLLATE "C"), as Python orders strings, so ties break the same way everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import posixpath
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import enry

from metre.processors import identitystore, people
from metre.processors.metrics.linguist import LOCK_FILES
from metre.processors.metrics.ownership import FileAuthor
from metre.processors.people import DEFAULT_BOTS, Bots, People
from metre.processors.store import PgStore

FileSort = Literal["commits", "lines", "churn", "path"]
Connection = Any  # asyncpg.Connection or a pool's connection proxy


@functools.lru_cache(maxsize=65536)
def skipped(path: str) -> bool:
    """`classify(path).skipped` (processors/metrics/linguist.py: vendored, generated or a lock
    file), asking enry only the two questions that needs where a path's first classify asks
    five: ownership's first answer asks it for every file at head."""
    return (
        posixpath.basename(path).lower() in LOCK_FILES
        or bool(enry.is_vendor(path))
        or bool(enry.is_generated(path, b""))
    )


@contextlib.asynccontextmanager
async def analytic(store: PgStore) -> AsyncIterator[Connection]:
    """A connection, in a read-only transaction, for a read that joins and aggregates a whole
    repository's rows: its planner picks no nested loop and may hash in memory. The nested
    loops it picked came from estimates far off (no statistics yet after an ingest, filters on
    sums estimated at one row) and rescanned an aggregate per outer row, O(n^2); hash joins
    stay linear whatever the statistics say."""
    async with store.pool.acquire() as con, con.transaction(readonly=True):
        await con.execute("SET LOCAL enable_nestloop = off; SET LOCAL work_mem = '64MB'")
        yield con


_FILE_ORDER: dict[str, str] = {
    "commits": 'commits DESC, path COLLATE "C"',
    "lines": 'lines DESC NULLS LAST, path COLLATE "C"',
    "churn": '(added + removed) DESC, path COLLATE "C"',
    "path": 'path COLLATE "C"',
}

# A file's state at head: the non-merge commits' sums (file_stats) plus what merges decided
# themselves (file_merge_lines, processors/metrics/merges.py). The blob measures are known when
# no contribution lacked them (events of an earlier poller, until the history is republished);
# the lines of code likewise, with their own count of unknown contributions (added later).
_STATE = """
SELECT s.path, s.commits, s.added, s.removed, s.binary_changes, s.last_binary, s.last_change_at,
       s.presence + coalesce(m.presence, 0) > 0 AS exists,
       s.added - s.removed + coalesce(m.lines, 0) AS length,
       s.blob_unknown + coalesce(m.blob_unknown, 0) = 0 AS blobs_known,
       s.blob_bytes + coalesce(m.blob_bytes, 0) AS blob_bytes,
       s.blob_binary + coalesce(m.blob_binary, 0) AS blob_binary,
       s.code_unknown + coalesce(m.code_unknown, 0) = 0 AS code_known,
       s.blob_code + coalesce(m.blob_code, 0) AS blob_code
FROM file_stats s LEFT JOIN file_merge_lines m ON m.repo_id = s.repo_id AND m.path = s.path
WHERE s.repo_id = $1 AND s.commits > 0
"""

_FILES = """
SELECT f.path, f.commits, f.added, f.removed,
       CASE WHEN f.exists AND f.binary_changes = 0 THEN f.length END AS lines,
       f.exists, f.last_binary AS binary, f.last_binary AS last_change_binary,
       f.binary_changes > 0 AS ever_binary, f.last_change_at,
       CASE WHEN f.exists AND f.blobs_known THEN f.blob_bytes END AS bytes,
       CASE WHEN f.exists AND f.blobs_known THEN f.blob_binary > 0 END AS binary_at_head,
       CASE WHEN f.exists AND f.code_known THEN f.blob_code END AS code_lines,
       (SELECT count(*) FROM file_authors a
        WHERE a.repo_id = $1 AND a.path = f.path AND a.commits > 0) AS authors
FROM ({state}) f
WHERE $2::boolean IS NULL OR f.exists = $2
ORDER BY {order}
LIMIT $3 OFFSET $4
"""

# Paths present at head (every kind), merge-only paths included.
_PRESENT = """
SELECT path FROM (
    SELECT path, presence FROM file_stats WHERE repo_id = $1
    UNION ALL SELECT path, presence FROM file_merge_lines WHERE repo_id = $1
) p GROUP BY path HAVING sum(presence) > 0
"""


async def files(
    store: PgStore, repo_id: int, sort: FileSort, exists: bool | None, limit: int, offset: int
) -> dict[str, Any]:
    """One page of files (every path with commits; `exists` filters on presence at head),
    and how many there are in all. `lines` is null for files absent at head or ever binary;
    `bytes` and `binary_at_head` for files absent at head or whose measures are not known,
    `code_lines` for files absent at head or whose lines of code are not known."""
    sql = _FILES.format(state=_STATE, order=_FILE_ORDER[sort])
    async with analytic(store) as con:  # the state's left join: hashed, not rescanned
        total = await con.fetchval(
            f"SELECT count(*) FROM ({_STATE}) f WHERE $2::boolean IS NULL OR f.exists = $2",  # noqa: S608
            repo_id,
            exists,
        )
        recs = await con.fetch(sql, repo_id, exists, limit, offset)
    out = []
    for r in recs:
        row = dict(r)
        row["last_change_at"] = r["last_change_at"].astimezone(UTC).isoformat()
        out.append(row)
    return {"total": total, "files": out}


async def latest_day(store: PgStore, repo_id: int) -> date | None:
    """The UTC day of the repository's latest author date (merges included), None if empty."""
    day: date | None = await store.pool.fetchval(
        "SELECT max(day) FROM activity_daily WHERE repo_id = $1 AND commits > 0", repo_id
    )
    return day


def _days_before(day: date, n: int) -> date:
    """`day` minus `n` days, or the first day Python has (0001-01-01) when that is earlier."""
    if (day - date.min).days <= n:
        return date.min
    return day - timedelta(days=n)


# The window's file changes by author time, from the facts (index commits_author_time): per
# (path, email) first, then per path, both hashed (no sort on text); the files' state at head
# computed once, and filtered after the join, whose estimates the filter on sums would ruin.
_HOTSPOTS = f"""
WITH h AS MATERIALIZED (
    SELECT path, sum(changes)::bigint AS changes, array_agg(author_email) AS emails
    FROM (
        SELECT f.path, c.author_email, count(*) AS changes
        FROM commits c JOIN file_changes f ON f.repo_id = c.repo_id AND f.sha = c.sha
        WHERE c.repo_id = $1 AND c.author_time >= $2
              AND c.author_time < (($3::date + 1)::timestamp AT TIME ZONE 'UTC')
        GROUP BY f.path, c.author_email
    ) w
    GROUP BY path
), s AS MATERIALIZED ({_STATE})
SELECT h.path, h.changes, s.length AS lines, s.blob_code AS code_lines,
       h.changes * s.blob_code AS score, h.emails
FROM h JOIN s ON s.path = h.path
WHERE s.exists AND s.binary_changes = 0 AND s.code_known AND s.blob_code > 0
ORDER BY score DESC, h.path COLLATE "C"
"""  # noqa: S608 (constant)


async def hotspots(store: PgStore, repo_id: int, days: int, limit: int) -> dict[str, Any]:
    """Files present at head (never binary; not vendored, generated or lock files, by
    Linguist's path rules) ranked by commits in the window x current lines of code. Files
    without code at head (0 code lines: data, prose, comments only) drop out, and so do files
    whose lines of code are not known yet (events of an earlier poller, until the history is
    published again): a size metre cannot state exactly ranks nothing.

    The window is the `days` UTC days ending with the latest author day, both ends included.
    """
    last = await latest_day(store, repo_id)
    if last is None:
        return {"window": None, "files": []}
    first = _days_before(last, days - 1)
    async with analytic(store) as con:
        recs = await con.fetch(
            _HOTSPOTS,
            repo_id,
            datetime.combine(first, time(), UTC),
            last,  # the day after it is computed in SQL: after 9999-12-31 Python has no date
        )
    files: list[dict[str, Any]] = []
    for r in recs:
        if skipped(r["path"]):
            continue
        if len(files) == limit:
            break
        row = dict(r)
        # Authors are lower-cased emails as the metric tables key them (Python's str.lower,
        # not PostgreSQL's locale-dependent lower()), in code point order.
        row["authors"] = sorted({e.lower() for e in row.pop("emails")})
        files.append(row)
    return {
        "window": {"from": first.isoformat(), "to": last.isoformat(), "days": days},
        "files": files,
    }


async def file_authors(store: PgStore, repo_id: int) -> tuple[list[FileAuthor], list[str]]:
    """The degree-of-authorship inputs of the files present at head, and those files, but for
    vendored, generated and lock files (Linguist's path rules): not code people own."""
    async with analytic(store) as con:
        present = await con.fetch(_PRESENT, repo_id)
        counted = [r["path"] for r in present if not skipped(r["path"])]
        recs = await con.fetch(
            "SELECT a.path, a.email, a.commits, a.created"
            " FROM file_authors a JOIN unnest($2::text[]) AS s(path) ON s.path = a.path"
            " WHERE a.repo_id = $1 AND a.commits > 0",
            repo_id,
            counted,
        )
    rows = [FileAuthor(*r) for r in recs]  # path, email, commits, created
    return rows, counted


async def people_file_authors(
    store: PgStore, repo_id: int, bots: Bots = DEFAULT_BOTS
) -> tuple[list[FileAuthor], list[str], People]:
    """`file_authors` regrouped per individual (keyed by its smallest email; bots left out
    when asked), and the mapping used, which names each individual's id."""
    rows, counted = await file_authors(store, repo_id)
    who = await identitystore.people(store, {r.email for r in rows})
    return people.file_authors(rows, who, bots), counted, who


# Coupling over the facts (processors/metrics/coupling.py says why there is no pair table).
# `k`: the distinct (commit, path) of the repository's commits of at most $2 distinct paths
# (merges have no file changes); hashed, each computed once.
_KEPT = """
d AS MATERIALIZED (SELECT DISTINCT sha, path FROM file_changes WHERE repo_id = $1),
k AS MATERIALIZED (
    SELECT d.sha, d.path FROM d
    JOIN (SELECT sha FROM d GROUP BY sha HAVING count(*) <= $2) kept ON kept.sha = d.sha
)"""

# The pairs are counted over integers: each kept commit and each path numbered once (paths in
# code point order, so comparing numbers compares paths), then joined and grouped on those.
_COUPLING = """
WITH d AS MATERIALIZED (
    SELECT DISTINCT sha, path FROM file_changes WHERE repo_id = $1
), kept AS MATERIALIZED (
    SELECT sha, row_number() OVER () AS cid FROM d GROUP BY sha HAVING count(*) <= $2
), paths AS MATERIALIZED (
    SELECT path, row_number() OVER (ORDER BY path COLLATE "C") AS pid
    FROM (SELECT DISTINCT path FROM d) x
), k AS MATERIALIZED (
    SELECT kept.cid, paths.pid
    FROM d JOIN kept ON kept.sha = d.sha JOIN paths ON paths.path = d.path
), c AS (
    SELECT pid, count(*)::bigint AS commits FROM k GROUP BY pid
), p AS (
    SELECT a.pid AS a, b.pid AS b, count(*)::bigint AS shared
    FROM k a JOIN k b ON a.cid = b.cid AND a.pid < b.pid
    GROUP BY 1, 2 HAVING count(*) >= $3
)
SELECT pa.path AS path_a, pb.path AS path_b, p.shared, ca.commits AS commits_a,
       cb.commits AS commits_b, p.shared::float8 / ((ca.commits + cb.commits)::float8 / 2) AS degree
FROM p JOIN c ca ON ca.pid = p.a JOIN c cb ON cb.pid = p.b
JOIN paths pa ON pa.pid = p.a JOIN paths pb ON pb.pid = p.b
ORDER BY p.shared DESC, degree DESC, p.a, p.b
LIMIT $4
"""

_PARTNERS = f"""
WITH {_KEPT}, mine AS (
    SELECT sha FROM k WHERE path = $5
), p AS (
    SELECT k.path, count(*)::bigint AS shared
    FROM k JOIN mine ON mine.sha = k.sha
    WHERE k.path <> $5
    GROUP BY k.path HAVING count(*) >= $3
), c AS (
    SELECT k.path, count(*)::bigint AS commits
    FROM k JOIN p ON p.path = k.path
    GROUP BY k.path
), own AS (
    SELECT count(*)::bigint AS commits FROM mine  -- one row: the file's own commits
), pairs AS (
    SELECT CASE WHEN $5 COLLATE "C" < p.path COLLATE "C" THEN $5 ELSE p.path END AS path_a,
           CASE WHEN $5 COLLATE "C" < p.path COLLATE "C" THEN p.path ELSE $5 END AS path_b,
           p.shared,
           CASE WHEN $5 COLLATE "C" < p.path COLLATE "C" THEN own.commits ELSE c.commits END
               AS commits_a,
           CASE WHEN $5 COLLATE "C" < p.path COLLATE "C" THEN c.commits ELSE own.commits END
               AS commits_b
    FROM p JOIN c ON c.path = p.path CROSS JOIN own
)
SELECT own.commits AS own, x.* FROM own LEFT JOIN (
    SELECT path_a, path_b, shared, commits_a, commits_b,
           shared::float8 / ((commits_a + commits_b)::float8 / 2) AS degree
    FROM pairs
    ORDER BY shared DESC, degree DESC, path_a COLLATE "C", path_b COLLATE "C"
    LIMIT $4
) x ON true
ORDER BY x.shared DESC, x.degree DESC, x.path_a COLLATE "C", x.path_b COLLATE "C"
"""  # noqa: S608 (constant)


async def coupling(
    store: PgStore, repo_id: int, max_files: int, min_shared: int, limit: int
) -> list[dict[str, Any]]:
    """Pairs (path_a < path_b) with at least `min_shared` (>= 1) shared commits among the
    non-merge commits of at most `max_files` files. Ranked by shared commits, then degree
    (descending), then paths."""
    async with analytic(store) as con:
        recs = await con.fetch(_COUPLING, repo_id, max_files, max(min_shared, 1), limit)
    return [dict(r) for r in recs]


async def partners(
    store: PgStore, repo_id: int, path: str, max_files: int, min_shared: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The pairs of `coupling` holding `path`, ranked alike, and the non-merge commits of at
    most `max_files` files touching `path` (one read gives both)."""
    async with analytic(store) as con:
        recs = await con.fetch(_PARTNERS, repo_id, max_files, max(min_shared, 1), limit, path)
    rows = [{k: v for k, v in r.items() if k != "own"} for r in recs if r["path_a"] is not None]
    return rows, recs[0]["own"]
