"""People metrics regrouped by individual (pure): the read-time half of identities.

The metric tables key people by author email (after .mailmap, lower-cased). A read fetches its
per-email rows, asks the identity store who each email is (`People`), and folds the rows of
one individual together here: counts and lines summed, first commit the least, last commit
and name those of the latest (time, name), contributor days the union, file authorship
(commits, creations) summed per file. An individual is named in results by its smallest
email (code point order), which is what a .mailmap mapping every one of its emails to that
one would give, so regrouped results equal a fresh ingest under such a .mailmap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from metre.processors.identities import implicit_id
from metre.processors.metrics.ownership import FileAuthor

Bots = Literal["include", "exclude"]
DEFAULT_BOTS: Bots = "include"


@dataclass(frozen=True, slots=True)
class Person:
    """Who an email is: the individual's id, its smallest email (how results name it), all
    its emails, and whether it is a bot."""

    id: str
    email: str
    emails: tuple[str, ...]
    bot: bool


@dataclass(frozen=True, slots=True)
class People:
    """The identity mapping a read was computed with (`generation` names it)."""

    generation: int = 0
    by_email: Mapping[str, Person] = field(default_factory=dict)

    def of(self, email: str) -> Person:
        """The individual `email` belongs to; on its own when no stored individual names it."""
        found = self.by_email.get(email)
        return found if found is not None else Person(implicit_id(email), email, (email,), False)

    def counted(self, email: str, bots: Bots) -> bool:
        return bots == "include" or not self.of(email).bot


def authors(rows: Iterable[Mapping[str, Any]], people: People, bots: Bots) -> list[dict[str, Any]]:
    """Per-email author rows (name, email, commits, added, removed, first_commit_at and
    last_commit_at as datetimes) folded per individual; by commits descending, then email."""
    folded: dict[str, dict[str, Any]] = {}
    for r in rows:
        if not people.counted(r["email"], bots):
            continue
        p = people.of(r["email"])
        acc = folded.get(p.id)
        if acc is None:
            folded[p.id] = {
                "name": r["name"],
                "email": p.email,
                "individual": p.id,
                "emails": list(p.emails),
                "commits": r["commits"],
                "added": r["added"],
                "removed": r["removed"],
                "first_commit_at": r["first_commit_at"],
                "last_commit_at": r["last_commit_at"],
            }
            continue
        acc["commits"] += r["commits"]
        acc["added"] += r["added"]
        acc["removed"] += r["removed"]
        acc["first_commit_at"] = min(acc["first_commit_at"], r["first_commit_at"])
        if (r["last_commit_at"], r["name"]) > (acc["last_commit_at"], acc["name"]):
            acc["last_commit_at"], acc["name"] = r["last_commit_at"], r["name"]
    out = sorted(folded.values(), key=lambda a: (-a["commits"], a["email"]))
    for a in out:
        a["first_commit_at"] = _iso(a["first_commit_at"])
        a["last_commit_at"] = _iso(a["last_commit_at"])
    return out


def days(rows: Iterable[tuple[str, date]], people: People, bots: Bots) -> list[tuple[str, date]]:
    """(email, day) pairs as (individual id, day), bots left out when asked."""
    return [(people.of(e).id, d) for e, d in rows if people.counted(e, bots)]


def file_authors(rows: Iterable[FileAuthor], people: People, bots: Bots) -> list[FileAuthor]:
    """Per-(file, email) authorship as per-(file, individual), keyed by the individual's
    smallest email: commits and creations summed."""
    acc: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        if not people.counted(r.email, bots):
            continue
        c = acc.setdefault((r.path, people.of(r.email).email), [0, 0])
        c[0] += r.commits
        c[1] += r.created
    return [FileAuthor(path, email, n, made) for (path, email), (n, made) in acc.items()]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()
