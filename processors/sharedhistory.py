"""The same history registered under several URLs, found so organisation-wide metrics count
it once (a PostgreSQL read, and a pure choice of which repository stands for it).

Two registrations hold the same history when they have the same root commits (commits without
parents) and one's commits are all among the other's: a mirror, a second URL of the same
server, a fork that has not diverged. A fork with commits of its own on both sides is not
redundant: both count (and their shared commits twice, as before).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from metre.processors.database import Database


@dataclass(frozen=True, slots=True)
class Tracked:
    repo_id: int
    roots: tuple[str, ...]  # sorted
    commits: int


def candidates(repos: Sequence[Tracked]) -> list[list[Tracked]]:
    """Groups of two or more repositories with the same non-empty root set, each ordered by
    commits descending, then id: the first of a group is the one that stands for it."""
    groups: dict[tuple[str, ...], list[Tracked]] = {}
    for r in repos:
        if r.roots:
            groups.setdefault(r.roots, []).append(r)
    return [
        sorted(g, key=lambda r: (-r.commits, r.repo_id))
        for _, g in sorted(groups.items())
        if len(g) > 1
    ]


def redundant(groups: list[list[Tracked]], contained: Callable[[int, int], bool]) -> dict[int, int]:
    """repo id -> the id it is counted as, for every repository whose commits are all in a
    repository of its group that is kept (`contained(inner, outer)` says so)."""
    out: dict[int, int] = {}
    for g in groups:
        kept: list[int] = []
        for r in g:
            same = next((k for k in kept if contained(r.repo_id, k)), None)
            if same is None:
                kept.append(r.repo_id)
            else:
                out[r.repo_id] = same
    return out


_TRACKED = """
SELECT repo_id, count(*) AS commits,
       coalesce(array_agg(sha ORDER BY sha COLLATE "C")
                FILTER (WHERE cardinality(parents) = 0), '{}') AS roots
FROM commits WHERE repo_id = ANY($1::bigint[]) GROUP BY repo_id
"""

_OUTSIDE = """
SELECT NOT EXISTS (
    SELECT 1 FROM commits a WHERE a.repo_id = $1
    AND NOT EXISTS (SELECT 1 FROM commits b WHERE b.repo_id = $2 AND b.sha = a.sha)
)
"""


async def same_history(store: Database, repo_ids: Sequence[int]) -> dict[int, int]:
    """Which of `repo_ids` hold a history another of them already holds: id -> counted as."""
    async with store.pool.acquire() as con:
        recs = await con.fetch(_TRACKED, list(repo_ids))
        groups = candidates([Tracked(r["repo_id"], tuple(r["roots"]), r["commits"]) for r in recs])
        if not groups:
            return {}
        answers: dict[tuple[int, int], bool] = {}
        for g in groups:
            for inner in g:
                for outer in g:
                    if inner is not outer and inner.commits <= outer.commits:
                        answers[(inner.repo_id, outer.repo_id)] = bool(
                            await con.fetchval(_OUTSIDE, inner.repo_id, outer.repo_id)
                        )
    return redundant(groups, lambda a, b: answers.get((a, b), False))
