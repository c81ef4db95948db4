"""Identities in PostgreSQL (I/O): the book of processors/identities.py, stored, changed one
writer at a time, and the mapping people metrics are read through (processors/people.py).

Only individuals someone changed are stored (migration 0024). Every email the metric tables
hold that no stored individual names is an individual on its own, with `implicit_id(email)` as
its id, the names seen on it and the bot flag of the well-known patterns; so the book seeds
itself from what metre already counted (emails after .mailmap) and a new author needs no write.

A change runs the pure model on the whole book inside one transaction that holds the
`identity_state` row: a refused operation (`IdentityError`) rolls back and writes nothing; an
accepted one rewrites the individuals it changed and bumps the generation that people metrics
carry in their ETag.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, TypeVar

from metre.processors.database import Database
from metre.processors.identities import (
    Enrolment,
    IdentityBook,
    Individual,
    implicit_id,
    is_bot,
)
from metre.processors.people import People, Person

T = TypeVar("T")
Connection = Any  # asyncpg.Connection or a pool's connection proxy
Op = Callable[[IdentityBook], tuple[IdentityBook, T]]


async def generation(store: Database) -> int:
    """How many changes the identities have had (part of every people metric's ETag)."""
    g: int | None = await store.pool.fetchval("SELECT generation FROM identity_state")
    return g or 0


async def _seen(con: Connection, emails: list[str] | None = None) -> dict[str, set[str]]:
    """Names the metric tables hold for each email (all emails when None): each
    repository's latest name per commit kind (author_totals)."""
    recs = await con.fetch(
        "SELECT DISTINCT email, name FROM author_totals"
        " WHERE commits > 0 AND ($1::text[] IS NULL OR email = ANY($1::text[]))",
        emails,
    )
    out: dict[str, set[str]] = {}
    for r in recs:
        out.setdefault(r["email"], set()).add(r["name"])
    return out


async def _stored(con: Connection, ids: list[str] | None = None) -> dict[str, Individual]:
    """Stored individuals (those of `ids`, all when None), enrolments sorted by start."""
    ind = await con.fetch(
        "SELECT id, bot FROM identity_individuals WHERE $1::text[] IS NULL OR id = ANY($1)", ids
    )
    emails = await con.fetch(
        "SELECT individual_id, email FROM identity_emails"
        " WHERE $1::text[] IS NULL OR individual_id = ANY($1)",
        ids,
    )
    names = await con.fetch(
        "SELECT individual_id, name FROM identity_names"
        " WHERE $1::text[] IS NULL OR individual_id = ANY($1)",
        ids,
    )
    enrol = await con.fetch(
        "SELECT individual_id, organisation, start_date, end_date FROM identity_enrolments"
        " WHERE $1::text[] IS NULL OR individual_id = ANY($1)"
        ' ORDER BY start_date, end_date, organisation COLLATE "C"',
        ids,
    )
    by_id: dict[str, dict[str, Any]] = {
        r["id"]: {"bot": r["bot"], "emails": set(), "names": set(), "enrolments": []} for r in ind
    }
    for r in emails:
        by_id[r["individual_id"]]["emails"].add(r["email"])
    for r in names:
        by_id[r["individual_id"]]["names"].add(r["name"])
    for r in enrol:
        by_id[r["individual_id"]]["enrolments"].append(
            Enrolment(r["organisation"], r["start_date"], r["end_date"])
        )
    return {
        pid: Individual(
            pid,
            frozenset(v["emails"]),
            frozenset(v["names"]),
            v["bot"],
            tuple(v["enrolments"]),
        )
        for pid, v in by_id.items()
        if v["emails"]
    }


def _implicit(email: str, names: set[str]) -> Individual:
    return Individual(
        implicit_id(email),
        frozenset({email}),
        frozenset(names),
        bot=any(is_bot(n, email) for n in names) or is_bot("", email),
    )


async def load_book(con: Connection) -> IdentityBook:
    """The whole book: stored individuals (with the names seen on their emails added) and
    one implicit individual per other email the metric tables hold."""
    seen = await _seen(con)
    stored = await _stored(con)
    people: dict[str, Individual] = {}
    claimed: set[str] = set()
    for pid, p in stored.items():
        extra = set().union(*(seen.get(e, set()) for e in p.emails))
        people[pid] = Individual(pid, p.emails, p.names | extra, p.bot, p.enrolments)
        claimed |= p.emails
    for email in sorted(set(seen) - claimed):
        i = _implicit(email, seen[email])
        people.setdefault(i.id, i)
    return IdentityBook(people)


async def book(store: Database) -> tuple[IdentityBook, int]:
    """The whole book and its generation, read in one snapshot."""
    async with store.pool.acquire() as con, con.transaction(isolation="repeatable_read"):
        g = await con.fetchval("SELECT generation FROM identity_state")
        return await load_book(con), g


class StaleGeneration(Exception):
    """The identities are no longer at the generation a change was asked against."""


async def change(
    store: Database, op: Op[T], expect: int | None = None
) -> tuple[T, IdentityBook, int]:
    """Apply `op` to the current book and store what it changed, one writer at a time.

    `op` raises `IdentityError` to refuse: nothing is written; so does `StaleGeneration`
    when `expect` is given and the generation has moved on. Returns `op`'s value, the new
    book and the generation after the change (unchanged when the op changed nothing)."""
    async with store.pool.acquire() as con, con.transaction():
        g: int = await con.fetchval("SELECT generation FROM identity_state FOR UPDATE")
        if expect is not None and g != expect:
            raise StaleGeneration(g)
        old = await load_book(con)
        new, value = op(old)
        changed = [p for pid, p in new.individuals.items() if old.individuals.get(pid) != p]
        gone = [pid for pid in old.individuals if pid not in new.individuals]
        if changed or gone:
            await _write(con, [p.id for p in changed] + gone, changed)
            g = await con.fetchval(
                "UPDATE identity_state SET generation = generation + 1 RETURNING generation"
            )
    return value, new, g


async def _write(con: Connection, drop: list[str], add: Iterable[Individual]) -> None:
    """Individuals `drop` deleted (their emails, names, enrolments go by cascade), `add`
    inserted whole: emails only ever move among these, so no email is claimed twice."""
    await con.execute("DELETE FROM identity_individuals WHERE id = ANY($1::text[])", drop)
    add = list(add)
    await con.executemany(
        "INSERT INTO identity_individuals (id, bot) VALUES ($1, $2)", [(p.id, p.bot) for p in add]
    )
    await con.executemany(
        "INSERT INTO identity_emails (email, individual_id) VALUES ($1, $2)",
        [(e, p.id) for p in add for e in sorted(p.emails)],
    )
    await con.executemany(
        "INSERT INTO identity_names (individual_id, name) VALUES ($1, $2)",
        [(p.id, n) for p in add for n in sorted(p.names)],
    )
    await con.executemany(
        "INSERT INTO identity_enrolments (individual_id, organisation, start_date, end_date)"
        " VALUES ($1, $2, $3, $4)",
        [(p.id, e.organisation, e.start, e.end) for p in add for e in p.enrolments],
    )


async def people(store: Database, emails: Iterable[str]) -> People:
    """Who each of `emails` is, for a read: the stored individual naming it (with all that
    individual's emails), or the email on its own, bot by the well-known patterns."""
    wanted = sorted(set(emails))
    async with store.pool.acquire() as con, con.transaction(isolation="repeatable_read"):
        g: int = await con.fetchval("SELECT generation FROM identity_state")
        owners = await con.fetch(
            "SELECT email, individual_id FROM identity_emails WHERE email = ANY($1::text[])",
            wanted,
        )
        ids = sorted({r["individual_id"] for r in owners})
        stored = await _stored(con, ids) if ids else {}
        alone = sorted(set(wanted) - {r["email"] for r in owners})
        seen = await _seen(con, alone) if alone else {}
    by_email: dict[str, Person] = {}
    for p in stored.values():
        person = Person(p.id, min(p.emails), tuple(sorted(p.emails)), p.bot)
        for e in p.emails:
            by_email[e] = person
    for e in alone:
        i = _implicit(e, seen.get(e, set()))
        by_email[e] = Person(i.id, e, (e,), i.bot)
    return People(g, by_email)


def individual_json(p: Individual) -> dict[str, Any]:
    """An individual as the API serves it: open enrolment bounds as null."""
    from metre.processors.identities import MAX_DATE, MIN_DATE

    def bound(d: date, open_: date) -> str | None:
        return None if d == open_ else d.isoformat()

    return {
        "id": p.id,
        "email": min(p.emails),
        "emails": sorted(p.emails),
        "names": sorted(p.names),
        "bot": p.bot,
        "enrolments": [
            {
                "organisation": e.organisation,
                "start": bound(e.start, MIN_DATE),
                "end": bound(e.end, MAX_DATE),
            }
            for e in p.enrolments
        ],
    }
