"""The metric folds of a batch as set-based SQL (pure: builds SQL, runs none).

The sink (processors/sink.py) stages a batch's facts with binary COPY into three temporary
tables (`STAGE`: its commits, their file changes, their merge files), keeps the commits that
are new in the same statement that inserts them (`DEDUP`: the commits primary key is the
dedup set), and then merges each metric table with one `INSERT ... SELECT ... GROUP BY ... ON
CONFLICT DO UPDATE` over the staged rows (`FOLDS`, by table name). The conflict action is the
table's own (`MetricTable.upsert_sql`): counters are summed, extremes kept at their least or
greatest, exactly as the metric functions of processors/metrics/* define them (they are the
test oracle: the property tests compare the two).

Two inputs are computed in Python and staged, because SQL cannot compute them the same way:
the author's identity key (processors/emailkey.py: Python's `str.lower`, which PostgreSQL's
`lower()` is not) and a path's Linguist language (go-enry, processors/metrics/linguist.py).
The punch card's local weekday and hour are staged too: the facts keep the author's UTC offset
in whole minutes, and an event may carry one with seconds.

Retraction stays in Python (processors/retract.py): it negates the deltas of the commits it
reads back, and sets least/greatest columns again from the commits that remain, which no fold
of the batch's own rows can do (an extreme cannot be taken back out of a row).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from metre.processors.metrics import TABLES
from metre.processors.metrics.policy import CHANGE, EMPTY, MERGE

COMMIT_COLUMNS = (
    "repo_id", "sha", "parents", "author_name", "author_email", "author_key", "author_time",
    "author_tz", "committer_name", "committer_email", "committer_time", "committer_tz",
    "summary", "is_merge", "files", "added", "removed", "merge_files", "author_time_raw",
    "committer_time_raw", "weekday", "hour",
)  # fmt: skip
"""The columns of `stage_commits`, in the order of the records the sink copies."""

FILE_COLUMNS = (
    "repo_id", "sha", "seq", "path", "added", "removed", "is_binary", "change", "blob_bytes",
    "blob_binary", "blob_text_bytes", "blob_code", "language", "author_key", "author_time",
)  # fmt: skip
"""The columns of `stage_files` (`language`: the counted Linguist language, or NULL; the
commit's author key and time come along, so the per-file folds need no join)."""

MERGE_FILE_COLUMNS = (
    "repo_id", "sha", "path", "lines", "presence", "blob_bytes", "blob_binary",
    "blob_text_bytes", "blob_code", "language",
)  # fmt: skip
"""The columns of `stage_merge_files` (one row per merge file of a merge commit)."""

STAGE = """
CREATE TEMP TABLE IF NOT EXISTS stage_commits (
    repo_id bigint, sha text, parents text[], author_name text, author_email text,
    author_key text, author_time timestamptz, author_tz int, committer_name text,
    committer_email text, committer_time timestamptz, committer_tz int, summary text,
    is_merge boolean, files int, added bigint, removed bigint, merge_files jsonb,
    author_time_raw text, committer_time_raw text, weekday smallint, hour smallint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_files (
    repo_id bigint, sha text, seq int, path text, added bigint, removed bigint,
    is_binary boolean, change text, blob_bytes bigint, blob_binary smallint,
    blob_text_bytes bigint, blob_code bigint, language text, author_key text,
    author_time timestamptz
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS stage_merge_files (
    repo_id bigint, sha text, path text, lines bigint, presence int, blob_bytes bigint,
    blob_binary smallint, blob_text_bytes bigint, blob_code bigint, language text
) ON COMMIT DELETE ROWS;
"""
"""The staging tables: temporary (no WAL, private to the session), emptied at every commit, and
created by the transaction that first needs them, so any pooling of sessions is safe."""

CLEAR = """
DELETE FROM stage_commits; DELETE FROM stage_files; DELETE FROM stage_merge_files;
"""
"""Empty the staging tables for the next run of commits of the same transaction (a batch with
commits, then retractions, then commits again)."""

_FACT_COLUMNS = (
    "repo_id, sha, parents, author_name, author_email, author_key, author_time, author_tz, "
    "committer_name, committer_email, committer_time, committer_tz, summary, is_merge, files, "
    "added, removed, merge_files, author_time_raw, committer_time_raw"
)

DEDUP = f"""
WITH fresh AS (
    INSERT INTO commits ({_FACT_COLUMNS})
    SELECT {_FACT_COLUMNS} FROM stage_commits t
    WHERE EXISTS (SELECT 1 FROM repos r WHERE r.id = t.repo_id)
    ORDER BY t.repo_id, t.sha
    ON CONFLICT (repo_id, sha) DO NOTHING
    RETURNING repo_id, sha
), stale AS (
    DELETE FROM stage_commits s
    WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.repo_id = s.repo_id AND f.sha = s.sha)
)
SELECT repo_id, sha FROM fresh
"""  # noqa: S608 (constant)
"""Insert the staged commits not yet stored (of registered repositories), in key order, and
leave only those staged: every fold after it reads new commits only. Returns their keys."""

DROP_STALE = """
DELETE FROM stage_files f
WHERE NOT EXISTS (SELECT 1 FROM stage_commits s WHERE s.repo_id = f.repo_id AND s.sha = f.sha);
DELETE FROM stage_merge_files f
WHERE NOT EXISTS (SELECT 1 FROM stage_commits s WHERE s.repo_id = f.repo_id AND s.sha = f.sha);
"""
"""After `DEDUP` kept only some commits: the files and merge files of the others go too."""

INSERT_FILES = """
INSERT INTO file_changes (repo_id, sha, seq, path, added, removed, is_binary, change,
                          blob_bytes, blob_binary, blob_text_bytes, blob_code)
SELECT repo_id, sha, seq, path, added, removed, is_binary, change,
       blob_bytes, blob_binary, blob_text_bytes, blob_code
FROM stage_files
"""
"""The file-change facts of the new commits."""

_DAY = "(c.author_time AT TIME ZONE 'UTC')::date"
_KIND = f"CASE WHEN c.is_merge THEN {MERGE} WHEN c.files = 0 THEN {EMPTY} ELSE {CHANGE} END"


def _blob_sums(alias: str) -> str:
    """The six blob-measure counters (processors/metrics/files.py `blob_columns`): a row
    without measures (NULL bytes) is one unknown contribution, one without code another."""
    a = alias
    return (
        f"sum(COALESCE({a}.blob_bytes, 0)), sum(COALESCE({a}.blob_binary, 0)), "
        f"sum(COALESCE({a}.blob_text_bytes, 0)), sum(({a}.blob_bytes IS NULL)::int), "
        f"sum(COALESCE({a}.blob_code, 0)), sum(({a}.blob_code IS NULL)::int)"
    )


Source = Literal["commits", "files", "file_languages", "merge_files", "merge_languages"]


@dataclass(frozen=True, slots=True)
class SetFold:
    """One metric table's fold: the SELECT of its rows in the table's column order (key,
    counters, extremes' columns; grouped by the key), and the staged rows it reads (a
    repository has rows in the table when it has such staged rows)."""

    select: str
    source: Source


FOLDS: dict[str, SetFold] = {
    "activity_daily": SetFold(
        f"""SELECT c.repo_id, {_DAY}, {_KIND}, count(*), sum(c.is_merge::int), sum(c.added),
       sum(c.removed)
FROM stage_commits c GROUP BY 1, 2, 3""",  # noqa: S608 (constant)
        "commits",
    ),
    "author_totals": SetFold(
        f"""SELECT c.repo_id, c.author_key, {_KIND}, count(*), sum(c.added), sum(c.removed),
       min(c.author_time), max(c.author_time),
       (array_agg(c.author_name ORDER BY c.author_time DESC, c.author_name COLLATE "C" DESC))[1]
FROM stage_commits c GROUP BY 1, 2, 3""",  # noqa: S608 (constant)
        "commits",
    ),
    "author_days": SetFold(
        f"""SELECT c.repo_id, c.author_key, {_DAY}, {_KIND}, count(*)
FROM stage_commits c GROUP BY 1, 2, 3, 4""",  # noqa: S608 (constant)
        "commits",
    ),
    "punchcard": SetFold(
        f"""SELECT c.repo_id, c.weekday, c.hour, {_KIND}, count(*)
FROM stage_commits c GROUP BY 1, 2, 3, 4""",  # noqa: S608 (constant)
        "commits",
    ),
    "commit_sizes": SetFold(
        f"""SELECT c.repo_id, m.measure,
       CASE m.measure WHEN 'files' THEN c.files ELSE c.added + c.removed END, {_KIND}, count(*)
FROM stage_commits c CROSS JOIN (VALUES ('files'), ('lines')) AS m(measure)
GROUP BY 1, 2, 3, 4""",  # noqa: S608 (constant)
        "commits",
    ),
    "file_stats": SetFold(
        f"""SELECT f.repo_id, f.path, count(*), sum(f.added), sum(f.removed),
       sum(CASE f.change WHEN 'A' THEN 1 WHEN 'D' THEN -1 ELSE 0 END), sum(f.is_binary::int),
       {_blob_sums("f")},
       max(f.author_time), (array_agg(f.is_binary ORDER BY f.author_time DESC, f.is_binary DESC))[1]
FROM stage_files f GROUP BY 1, 2""",  # noqa: S608 (constant)
        "files",
    ),
    "file_authors": SetFold(
        """SELECT f.repo_id, f.path, f.author_key, count(*), sum((f.change = 'A')::int),
       sum(f.added), sum(f.removed)
FROM stage_files f GROUP BY 1, 2, 3""",
        "files",
    ),
    "language_lines": SetFold(
        """SELECT f.repo_id, f.language, sum(CASE WHEN f.is_binary THEN 0 ELSE 1 END),
       sum(CASE WHEN f.is_binary THEN 0 ELSE f.added END),
       sum(CASE WHEN f.is_binary THEN 0 ELSE f.removed END), sum(f.is_binary::int),
       sum(COALESCE(f.blob_text_bytes, 0)), sum((f.blob_bytes IS NULL)::int)
FROM stage_files f WHERE f.language IS NOT NULL GROUP BY 1, 2""",
        "file_languages",
    ),
    "file_merge_lines": SetFold(
        f"""SELECT m.repo_id, m.path, count(*), sum(m.lines), sum(m.presence), {_blob_sums("m")}
FROM stage_merge_files m GROUP BY 1, 2""",  # noqa: S608 (constant)
        "merge_files",
    ),
    "language_merge_lines": SetFold(
        """SELECT m.repo_id, m.language, count(DISTINCT m.sha), sum(m.lines),
       sum(COALESCE(m.blob_text_bytes, 0)), sum((m.blob_bytes IS NULL)::int)
FROM stage_merge_files m WHERE m.language IS NOT NULL GROUP BY 1, 2""",
        "merge_languages",
    ),
}
"""The set-based fold of each metric table, by name. A table left out here is folded in Python
by its metrics (processors/metrics `fold`) and written with its unnest upsert: none is today."""


def fold_sql(table: str) -> str:
    """`INSERT INTO table ... SELECT ... ORDER BY key ON CONFLICT (key) DO UPDATE ...` of
    `FOLDS[table]`, rows locked in key order, with the table's own conflict action."""
    spec = TABLES[table]
    names = ", ".join(c.name for c in spec.columns)
    order = ", ".join(str(i) for i in range(1, len(spec.key) + 1))
    action = spec.upsert_sql().split("\nON CONFLICT ", 1)[1]
    # sum() of bigints is numeric in PostgreSQL: the insert casts each value to its column.
    return (
        f"INSERT INTO {table} AS m ({names})\n"
        f"SELECT * FROM ({FOLDS[table].select}) AS t\n"
        f"ORDER BY {order}\n"
        f"ON CONFLICT {action}"
    )
