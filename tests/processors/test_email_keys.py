"""Identity keys of author emails that Python and PostgreSQL lower-case differently: the metric
rows are keyed as the metric functions key them, and retracting such an author's commits gives
the tables of a fresh ingest (real PostgreSQL for the second and third)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from metre.contracts.events import CommitEvent, FileChange, Person, RetractEvent
from metre.processors.emailkey import email_key
from metre.processors.metrics import total
from metre.processors.store import PgStore
from tests.processors.factories import sha
from tests.processors.test_retraction import assert_same, fresh  # noqa: F401 (fixture)

# U+0130 lower-cases to "i" + U+0307 in Python and to "i" in PostgreSQL (any collation); in
# the C locale PostgreSQL lower-cases ASCII only, so É and Σ stay as they are there.
EMAILS = ["İLKER@EXAMPLE.ORG", "ÉMILE@X.FR", "ΣΟΦΊΑ@X.GR", "Ada@X.org"]
_BASE = datetime(2024, 3, 1, tzinfo=UTC)


def _events() -> list[CommitEvent]:
    out = []
    for n in range(30):
        email = EMAILS[n % len(EMAILS)]
        who = Person(f"name {n % 3}", email, _BASE + timedelta(hours=7 * n))
        out.append(
            CommitEvent(
                repo_id=1,
                sha=sha(n),
                parents=(sha(f"p{n}"),),
                author=who,
                committer=who,
                summary=f"commit {n}",
                files=(FileChange(f"f{n % 4}.py", n, 1, False, "A" if n < 4 else "M"),),
            )
        )
    return out


def test_the_key_is_the_metrics_own() -> None:
    events = _events()
    keyed = {d.key[1] for d in total(events) if d.table in ("author_totals", "author_days")} | {
        d.key[2] for d in total(events) if d.table == "file_authors"
    }
    assert keyed == {email_key(e) for e in EMAILS}
    assert email_key("İLKER@EXAMPLE.ORG") == email_key("i̇lker@example.org") != "ilker@example.org"


@pytest.mark.integration
async def test_metric_rows_are_keyed_by_the_python_key(store: PgStore) -> None:
    await store.add_repo("https://example.org/a.git", None)
    events = _events()
    await store.apply(events)
    con = await asyncpg.connect(store._dsn)
    try:
        for table, column in (("author_totals", 1), ("author_days", 1), ("file_authors", 2)):
            got = {r["email"] for r in await con.fetch(f"SELECT email FROM {table}")}
            want = {d.key[column] for d in total(events) if d.table == table}
            assert got == want, table
        # PostgreSQL's own lower() of these emails is not the key: SQL never computes it.
        assert await con.fetchval("SELECT lower($1)", EMAILS[0]) != email_key(EMAILS[0])
    finally:
        await con.close()


@pytest.mark.integration
async def test_retracting_their_commits_equals_a_fresh_ingest(
    store: PgStore,
    fresh: PgStore,  # noqa: F811
) -> None:
    await store.add_repo("https://example.org/a.git", None)
    events = _events()
    await store.apply(events)
    # Some of every author's commits, their latest among them: each author's latest commit and
    # name must be found again among the commits that remain (by the author's key).
    gone = {e.sha for i, e in enumerate(events) if i % 3 == 0 or i >= len(events) - len(EMAILS)}
    await store.apply([RetractEvent(1, s) for s in sorted(gone)])
    await assert_same(store, fresh, [e for e in events if e.sha not in gone])
