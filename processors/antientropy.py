"""Anti-entropy facts (I/O): what reconcile (ingest/reconcile.py) compares with the mirror's
history, read from the commit facts alone.
"""

from __future__ import annotations

from metre.processors.database import Database


class AntiEntropy(Database):
    """The set of stored commits of a repository, whole or as a digest."""

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
