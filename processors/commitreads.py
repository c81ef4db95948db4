"""Reads of one commit and of the plain activity and author totals (I/O): every commit kind
counts here (processors/reads.py has the reads that apply a policy and span repositories).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from metre.processors.database import Database


class AmbiguousSha(Exception):
    """A short sha names more than one commit of the repository."""

    def __init__(self, prefix: str, candidates: list[str]) -> None:
        super().__init__(prefix)
        self.prefix = prefix
        self.candidates = candidates


def _iso(t: datetime, offset_minutes: int) -> str:
    return t.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat()


class CommitReads(Database):
    """Reads for the API."""

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
        """Activity per day|week|month of one repository, every commit kind counted: the one
        activity read (processors/reads.py `activity`) with its default policy."""
        from metre.processors.reads import activity  # reads imports the store, which is this

        return await activity(self, [repo_id], start, end, granularity)

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
