"""Reads of the per-file and coupling tables for the API (I/O: PostgreSQL queries only).

Derivations that are not plain SQL (degree of authorship, truck factor) are pure functions in
processors/metrics/ownership.py; these only fetch their inputs. Text is ordered by code point
(COLLATE "C"), as Python orders strings, so ties break the same way everywhere.
"""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any, Literal

from processors.metrics.ownership import FileAuthor
from processors.store import PgStore

FileSort = Literal["commits", "lines", "churn", "path"]

_FILE_ORDER: dict[str, str] = {
    "commits": 'commits DESC, path COLLATE "C"',
    "lines": 'lines DESC NULLS LAST, path COLLATE "C"',
    "churn": '(added + removed) DESC, path COLLATE "C"',
    "path": 'path COLLATE "C"',
}

_FILES = """
SELECT s.path, s.commits, s.added, s.removed,
       CASE WHEN s.presence > 0 AND s.binary_changes = 0 THEN s.added - s.removed END AS lines,
       s.presence > 0 AS exists, s.last_binary AS binary, s.last_change_at,
       (SELECT count(*) FROM file_authors a
        WHERE a.repo_id = s.repo_id AND a.path = s.path AND a.commits > 0) AS authors
FROM file_stats s
WHERE s.repo_id = $1 AND s.commits > 0 AND ($2::boolean IS NULL OR (s.presence > 0) = $2)
ORDER BY {order}
LIMIT $3 OFFSET $4
"""


async def files(
    store: PgStore, repo_id: int, sort: FileSort, exists: bool | None, limit: int, offset: int
) -> dict[str, Any]:
    """One page of files (every path with commits; `exists` filters on presence at head),
    and how many there are in all. `lines` is null for files absent at head or ever binary."""
    sql = _FILES.format(order=_FILE_ORDER[sort])
    async with store.pool.acquire() as con:
        total = await con.fetchval(
            "SELECT count(*) FROM file_stats WHERE repo_id = $1 AND commits > 0"
            " AND ($2::boolean IS NULL OR (presence > 0) = $2)",
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


async def hotspots(store: PgStore, repo_id: int, days: int, limit: int) -> dict[str, Any]:
    """Files present at head (never binary) ranked by commits in the window x current lines.

    The window is the `days` UTC days ending with the latest author day, both ends included.
    """
    last = await latest_day(store, repo_id)
    if last is None:
        return {"window": None, "files": []}
    first = last - timedelta(days=days - 1)
    recs = await store.pool.fetch(
        """
        WITH h AS (
            SELECT path, sum(commits)::bigint AS changes,
                   array_agg(DISTINCT email COLLATE "C" ORDER BY email COLLATE "C") AS authors
            FROM file_author_days
            WHERE repo_id = $1 AND day BETWEEN $2 AND $3 AND commits > 0
            GROUP BY path
        )
        SELECT h.path, h.changes, s.added - s.removed AS lines,
               h.changes * (s.added - s.removed) AS score, h.authors
        FROM h JOIN file_stats s ON s.repo_id = $1 AND s.path = h.path
        WHERE s.presence > 0 AND s.binary_changes = 0
        ORDER BY score DESC, h.path COLLATE "C"
        LIMIT $4
        """,
        repo_id,
        first,
        last,
        limit,
    )
    return {
        "window": {"from": first.isoformat(), "to": last.isoformat(), "days": days},
        "files": [{**dict(r), "authors": list(r["authors"])} for r in recs],
    }


async def file_authors(store: PgStore, repo_id: int) -> tuple[list[FileAuthor], list[str]]:
    """The degree-of-authorship inputs of the files present at head, and those files."""
    async with store.pool.acquire() as con:
        paths = await con.fetch(
            "SELECT path FROM file_stats WHERE repo_id = $1 AND presence > 0 AND commits > 0",
            repo_id,
        )
        recs = await con.fetch(
            """
            SELECT a.path, a.email, a.commits, a.created
            FROM file_authors a JOIN file_stats s ON s.repo_id = a.repo_id AND s.path = a.path
            WHERE a.repo_id = $1 AND s.presence > 0 AND s.commits > 0 AND a.commits > 0
            """,
            repo_id,
        )
    rows = [FileAuthor(r["path"], r["email"], r["commits"], r["created"]) for r in recs]
    return rows, [r["path"] for r in paths]


_COUPLING = """
WITH c AS (
    SELECT path, sum(commits)::bigint AS commits FROM coupling_files
    WHERE repo_id = $1 AND size <= $2 GROUP BY path
), p AS (
    SELECT path_a, path_b, sum(shared)::bigint AS shared FROM coupling_pairs
    WHERE repo_id = $1 AND size <= $2 AND ($5::text IS NULL OR path_a = $5 OR path_b = $5)
    GROUP BY path_a, path_b HAVING sum(shared) >= $3
)
SELECT p.path_a, p.path_b, p.shared, ca.commits AS commits_a, cb.commits AS commits_b,
       p.shared::float8 / ((ca.commits + cb.commits)::float8 / 2) AS degree
FROM p JOIN c ca ON ca.path = p.path_a JOIN c cb ON cb.path = p.path_b
ORDER BY p.shared DESC, degree DESC, p.path_a COLLATE "C", p.path_b COLLATE "C"
LIMIT $4
"""


async def coupling(
    store: PgStore, repo_id: int, max_files: int, min_shared: int, limit: int, path: str | None
) -> list[dict[str, Any]]:
    """Pairs (path_a < path_b) with at least `min_shared` (>= 1) shared commits among the
    non-merge commits of at most `max_files` files; `path` keeps the pairs holding it.
    Ranked by shared commits, then degree (descending), then paths."""
    recs = await store.pool.fetch(_COUPLING, repo_id, max_files, max(min_shared, 1), limit, path)
    return [dict(r) for r in recs]


async def commits_of(store: PgStore, repo_id: int, path: str, max_files: int) -> int:
    """Non-merge commits of at most `max_files` files touching `path`."""
    n: int | None = await store.pool.fetchval(
        "SELECT sum(commits)::bigint FROM coupling_files"
        " WHERE repo_id = $1 AND path = $2 AND size <= $3",
        repo_id,
        path,
        max_files,
    )
    return n or 0
