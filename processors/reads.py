"""Reads of the additive metric tables for the API (I/O: PostgreSQL queries only).

Every read takes a list of repository ids and sums over them, so one function serves both a
repository's endpoint and the organisation-wide form. Derivations (percentiles, contributor
series) are pure functions in processors/metrics/*; these only fetch their inputs. Reads of the
per-commit tables take the commit kinds their policy counts (processors/metrics/policy.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from metre.processors import identitystore, people
from metre.processors.database import Database
from metre.processors.metrics.contributors import period_start
from metre.processors.metrics.policy import Policy
from metre.processors.people import DEFAULT_BOTS, Bots
from metre.processors.store import PgStore


@dataclass(frozen=True, slots=True)
class Stamp:
    """A repository's provenance: the newest commit its poller published (`head`), when its
    metric tables last changed (`watermark`, None before any commit), and how many batches
    have changed them (`generation`)."""

    repo_id: int
    head: str | None
    watermark: datetime | None
    generation: int


async def stamps(store: PgStore, repo_ids: Sequence[int] | None) -> list[Stamp]:
    """Stamps of `repo_ids` (all repositories when None) that exist, by id."""
    recs = await store.pool.fetch(
        "SELECT id, head, watermark, generation FROM repos"
        " WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[]) ORDER BY id",
        None if repo_ids is None else list(repo_ids),
    )
    return [Stamp(r["id"], r["head"], r["watermark"], r["generation"]) for r in recs]


async def activity(
    store: Database,
    repo_ids: Sequence[int],
    start: date | None,
    end: date | None,
    granularity: str,
    policy: Policy = Policy(),  # noqa: B008 (frozen)
) -> list[dict[str, Any]]:
    """Activity per period summed over `repo_ids` and the kinds `policy` counts; `start` and
    `end` bound days (inclusive), so a period at either end may be cut (docs/metrics.md)."""
    period_start(date(2000, 1, 1), granularity)  # validates the granularity
    recs = await store.pool.fetch(
        """
        SELECT date_trunc($4, day::timestamp)::date AS period,
               sum(commits)::bigint AS commits, sum(merges)::bigint AS merges,
               sum(added)::bigint AS added, sum(removed)::bigint AS removed
        FROM activity_daily
        WHERE repo_id = ANY($1::bigint[]) AND ($2::date IS NULL OR day >= $2)
              AND ($3::date IS NULL OR day <= $3) AND kind = ANY($5::smallint[])
        GROUP BY 1 HAVING sum(commits) > 0
        ORDER BY 1
        """,
        list(repo_ids),
        start,
        end,
        granularity,
        policy.kinds,
    )
    return [{**dict(r), "period": r["period"].isoformat()} for r in recs]


async def authors(
    store: PgStore,
    repo_ids: Sequence[int],
    policy: Policy = Policy(),  # noqa: B008 (frozen)
    bots: Bots = DEFAULT_BOTS,
) -> list[dict[str, Any]]:
    """Per individual over `repo_ids` and the kinds `policy` counts (per-email rows regrouped
    through the identities: processors/people.py): totals, first and last commit, and the
    name of the latest (time, name); by commits descending, then email."""
    recs = await store.pool.fetch(
        """
        SELECT email, sum(commits)::bigint AS commits, sum(added)::bigint AS added,
               sum(removed)::bigint AS removed, min(first_commit_at) AS first_commit_at,
               max(last_commit_at) AS last_commit_at,
               (array_agg(name ORDER BY last_commit_at DESC, name COLLATE "C" DESC))[1] AS name
        FROM author_totals
        WHERE repo_id = ANY($1::bigint[]) AND kind = ANY($2::smallint[]) AND commits > 0
        GROUP BY email HAVING sum(commits) > 0
        """,
        list(repo_ids),
        policy.kinds,
    )
    who = await identitystore.people(store, (r["email"] for r in recs))
    return people.authors([dict(r) for r in recs], who, bots)


async def author_days(
    store: PgStore,
    repo_ids: Sequence[int],
    policy: Policy = Policy(),  # noqa: B008 (frozen)
    bots: Bots = DEFAULT_BOTS,
) -> list[tuple[str, date]]:
    """(individual id, UTC day) with at least one commit `policy` counts, over `repo_ids`."""
    recs = await store.pool.fetch(
        "SELECT DISTINCT email, day FROM author_days"
        " WHERE repo_id = ANY($1::bigint[]) AND kind = ANY($2::smallint[]) AND commits > 0",
        list(repo_ids),
        policy.kinds,
    )
    pairs = [(r["email"], r["day"]) for r in recs]
    who = await identitystore.people(store, {e for e, _ in pairs})
    return people.days(pairs, who, bots)


async def punchcard(
    store: PgStore,
    repo_ids: Sequence[int],
    policy: Policy = Policy(),  # noqa: B008 (frozen)
) -> list[tuple[int, int, int]]:
    """(weekday, hour, commits) summed over `repo_ids` and the kinds `policy` counts."""
    recs = await store.pool.fetch(
        "SELECT weekday, hour, sum(commits)::bigint AS commits FROM punchcard"
        " WHERE repo_id = ANY($1::bigint[]) AND kind = ANY($2::smallint[]) GROUP BY 1, 2",
        list(repo_ids),
        policy.kinds,
    )
    return [(r["weekday"], r["hour"], r["commits"]) for r in recs]


async def commit_sizes(
    store: PgStore, repo_ids: Sequence[int], policy: Policy
) -> list[tuple[str, int, int]]:
    """(measure, value, commits) summed over `repo_ids` and the kinds `policy` counts."""
    recs = await store.pool.fetch(
        "SELECT measure, value, sum(commits)::bigint AS commits FROM commit_sizes"
        " WHERE repo_id = ANY($1::bigint[]) AND kind = ANY($2::smallint[])"
        " GROUP BY 1, 2 HAVING sum(commits) <> 0",
        list(repo_ids),
        policy.kinds,
    )
    return [(r["measure"], r["value"], r["commits"]) for r in recs]


async def languages(store: PgStore, repo_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Per language summed over `repo_ids`: changes, added, removed, lines at head (added -
    removed plus what merges decided themselves: language_merge_lines), bytes at head (the
    sizes of its text blobs; null while some contribution's measures are unknown); by lines
    descending, then added descending, then name (code point order)."""
    recs = await store.pool.fetch(
        """
        SELECT language, sum(changes)::bigint AS changes, sum(added)::bigint AS added,
               sum(removed)::bigint AS removed, sum(lines)::bigint AS lines,
               CASE WHEN sum(blob_unknown) = 0 THEN sum(text_bytes)::bigint END AS bytes
        FROM (
            SELECT language, changes, added, removed, added - removed AS lines, text_bytes,
                   blob_unknown
            FROM language_lines WHERE repo_id = ANY($1::bigint[])
            UNION ALL
            SELECT language, 0, 0, 0, lines, text_bytes, blob_unknown
            FROM language_merge_lines WHERE repo_id = ANY($1::bigint[])
        ) l
        GROUP BY 1 HAVING sum(changes) <> 0 OR sum(lines) <> 0 OR sum(text_bytes) <> 0
        ORDER BY lines DESC, added DESC, language COLLATE "C"
        """,
        list(repo_ids),
    )
    return [dict(r) for r in recs]
