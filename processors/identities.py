"""Identities: which author emails are one individual, their organisations, and bots (pure).

The metric tables stay keyed by author email (after .mailmap, lower-cased); an individual is a
set of those emails. Regrouping people metrics by individual is then a read-time mapping, so a
merge, split or enrolment changes the mapping only and re-attribution needs no re-ingest.

The model follows SortingHat (GrimoireLab): an individual ("unique identity") with a profile
(name, email, bot flag), its identities (here: emails with the names seen on them) and dated
enrolments in organisations. `export_sortinghat`/`import_sortinghat` read and write the shape of
SortingHat 0.7's JSON export (``uidentities``/``organizations``). Where metre differs: an
identity is an email alone (SortingHat keys on name, email, username and source), and every
operation that would leave the book inconsistent raises `IdentityError` before changing it.

The matcher proposes merges, it never applies them (opt-in): same email (case-insensitive),
same normalised name, and GitHub's noreply forms (``12345+login@users.noreply.github.com`` and
``login@users.noreply.github.com`` are the same account).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

__all__ = [
    "Enrolment",
    "IdentityBook",
    "IdentityError",
    "Individual",
    "UnknownIndividual",
    "export_sortinghat",
    "github_login",
    "implicit_id",
    "import_sortinghat",
    "is_bot",
    "normalise_name",
    "propose_merges",
]

# SortingHat's open-ended enrolment bounds.
MIN_DATE = date(1900, 1, 1)
MAX_DATE = date(2100, 1, 1)

_NOREPLY = re.compile(r"^(?:(\d+)\+)?([^@+]+)@users\.noreply\.github\.com$")
# Names and emails of well-known automation; GitHub Apps commit as "<slug>[bot]".
_BOT_NAME = re.compile(
    r"(\[bot\]$)|^(dependabot|renovate|pre-commit-ci|github-actions|greenkeeper|snyk-bot"
    r"|mergify|codecov|allcontributors|imgbot|weblate|transifex-integration)\b",
    re.IGNORECASE,
)
_BOT_EMAIL = re.compile(
    r"(\[bot\]@users\.noreply\.github\.com$)|^(noreply@github\.com$)"
    r"|^(bot@renovateapp\.com$)|^(support@dependabot\.com$)|^(49699333\+dependabot)",
    re.IGNORECASE,
)


class IdentityError(ValueError):
    """A request the book refuses; the message names the problem (served as a 4xx)."""


class UnknownIndividual(IdentityError):
    """The request names an individual the book does not hold (served as a 404)."""


def is_bot(name: str, email: str) -> bool:
    """Whether a name/email pair is well-known automation (dependabot[bot], *[bot]@noreply...)."""
    return bool(_BOT_NAME.search(name.strip()) or _BOT_EMAIL.search(email.strip()))


def github_login(email: str) -> str | None:
    """The GitHub login of a noreply address, lower-cased, or None for any other address."""
    m = _NOREPLY.match(email.strip().lower())
    return m.group(2) if m else None


def implicit_id(email: str) -> str:
    """The id of the individual an email is on its own (no stored individual names it): stable
    and the same on every replica, so nothing needs seeding when a new author appears."""
    key = ("metre-identity:" + email.lower()).encode()
    return hashlib.md5(key, usedforsecurity=False).hexdigest()


def normalise_name(name: str) -> str:
    """Case-, accent- and spacing-insensitive form of a person's name, for matching only."""
    folded = unicodedata.normalize("NFKD", name).casefold()
    letters = "".join(c for c in folded if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s]", " ", letters).split())


@dataclass(frozen=True, slots=True)
class Enrolment:
    """Membership of an organisation over [start, end] (days, both inclusive)."""

    organisation: str
    start: date = MIN_DATE
    end: date = MAX_DATE

    def overlaps(self, other: Enrolment) -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True, slots=True)
class Individual:
    id: str
    emails: frozenset[str]
    names: frozenset[str] = frozenset()
    bot: bool = False
    enrolments: tuple[Enrolment, ...] = ()

    def organisation_on(self, day: date) -> str | None:
        """The organisation enrolled on `day`, or None (enrolments never overlap)."""
        for e in self.enrolments:
            if e.start <= day <= e.end:
                return e.organisation
        return None


@dataclass(frozen=True, slots=True)
class IdentityBook:
    """Individuals by id. Operations return a new book; a refused one raises and keeps this."""

    individuals: Mapping[str, Individual] = field(default_factory=dict)

    @classmethod
    def seed(cls, authors: Iterable[tuple[str, str]]) -> IdentityBook:
        """One individual per (already .mailmap-canonical) email, bots flagged by pattern."""
        names: dict[str, set[str]] = {}
        for email, name in authors:
            names.setdefault(email.lower(), set()).add(name)
        people = {}
        for email in sorted(names):
            pid = _new_id()
            people[pid] = Individual(
                pid,
                frozenset({email}),
                frozenset(names[email]),
                bot=any(is_bot(n, email) for n in names[email]),
            )
        return cls(people)

    def mapping(self) -> dict[str, str]:
        """email -> individual id: what a read joins the per-email metric rows through."""
        return {e: p.id for p in self.individuals.values() for e in p.emails}

    def bots(self) -> frozenset[str]:
        """Emails of individuals flagged as bots (what ``bots=exclude`` leaves out)."""
        return frozenset(e for p in self.individuals.values() if p.bot for e in p.emails)

    def _get(self, pid: str) -> Individual:
        try:
            return self.individuals[pid]
        except KeyError:
            raise UnknownIndividual(f"no individual with id {pid!r}") from None

    def _with(self, drop: Iterable[str], add: Iterable[Individual]) -> IdentityBook:
        people = {k: v for k, v in self.individuals.items() if k not in set(drop)}
        people.update({p.id: p for p in add})
        return IdentityBook(people)

    def merge(self, into: str, others: Iterable[str]) -> IdentityBook:
        """`others` folded into `into`: emails, names and enrolments (which must not overlap)."""
        target = self._get(into)
        rest = [self._get(o) for o in dict.fromkeys(others) if o != into]
        if not rest:
            raise IdentityError("merge needs at least one other individual than the target")
        merged = target
        for p in rest:
            merged = replace(
                merged,
                emails=merged.emails | p.emails,
                names=merged.names | p.names,
                bot=merged.bot or p.bot,
                enrolments=_checked(merged.enrolments + p.enrolments),
            )
        return self._with([p.id for p in rest], [merged])

    def split(self, pid: str, emails: Iterable[str]) -> tuple[IdentityBook, str]:
        """`emails` moved out of `pid` into a new individual (its id returned)."""
        person = self._get(pid)
        moving = frozenset(e.lower() for e in emails)
        if not moving:
            raise IdentityError("split needs at least one email")
        if unknown := sorted(moving - person.emails):
            raise IdentityError(f"individual {pid!r} has no email {', '.join(unknown)}")
        if moving == person.emails:
            raise IdentityError(f"split would leave individual {pid!r} with no email")
        new = Individual(_new_id(), moving, bot=person.bot)
        return self._with([], [replace(person, emails=person.emails - moving), new]), new.id

    def enrol(self, pid: str, enrolment: Enrolment) -> IdentityBook:
        """`pid` enrolled in an organisation; refused if the dates are reversed or overlap."""
        person = self._get(pid)
        if not enrolment.organisation.strip():
            raise IdentityError("an enrolment needs an organisation name")
        enrolments = _checked((*person.enrolments, enrolment))
        return self._with([], [replace(person, enrolments=enrolments)])

    def unenrol(self, pid: str, organisation: str, start: date | None = None) -> IdentityBook:
        """`pid`'s enrolments in `organisation` removed (only the one from `start` if given);
        refused when there is none to remove."""
        person = self._get(pid)
        kept = tuple(
            e
            for e in person.enrolments
            if not (e.organisation == organisation and start in (None, e.start))
        )
        if len(kept) == len(person.enrolments):
            since = "" if start is None else f" from {start}"
            raise IdentityError(f"individual {pid!r} has no enrolment in {organisation!r}{since}")
        return self._with([], [replace(person, enrolments=kept)])

    def set_bot(self, pid: str, bot: bool) -> IdentityBook:
        return self._with([], [replace(self._get(pid), bot=bot)])

    def overlay(self, other: IdentityBook) -> IdentityBook:
        """`other`'s individuals laid over this book (an import): each replaces the one with
        its id and takes its emails from whoever holds them; the rest is kept, an individual
        left without an email is dropped, and an email of a replaced individual that the
        import does not name becomes an individual on its own."""
        taken = {e for p in other.individuals.values() for e in p.emails}
        people: dict[str, Individual] = dict(other.individuals)
        alone: list[str] = []
        for pid, p in self.individuals.items():
            left = p.emails - taken
            if pid in other.individuals:
                alone += sorted(left)  # replaced: what the import does not claim stays alone
            elif left:
                people[pid] = p if left == p.emails else replace(p, emails=left)
        for e in alone:
            pid = implicit_id(e) if implicit_id(e) not in people else _new_id()
            people[pid] = Individual(pid, frozenset({e}))
        return IdentityBook(people)


def _checked(enrolments: tuple[Enrolment, ...]) -> tuple[Enrolment, ...]:
    """Enrolments sorted by start, refused if one is reversed or two overlap."""
    ordered = tuple(sorted(enrolments, key=lambda e: (e.start, e.end, e.organisation)))
    for e in ordered:
        if e.end < e.start:
            raise IdentityError(f"enrolment in {e.organisation!r} ends before it starts")
    for a, b in itertools.pairwise(ordered):
        if a.overlaps(b):
            raise IdentityError(
                f"enrolment in {b.organisation!r} from {b.start} overlaps the one in "
                f"{a.organisation!r} until {a.end}"
            )
    return ordered


def _new_id() -> str:
    return uuid.uuid4().hex


def propose_merges(book: IdentityBook) -> list[frozenset[str]]:
    """Groups of individual ids the matcher thinks are one person (2+ ids each), sorted.

    Keys: an email, a normalised name (only names of 2+ words, so "admin" or "john" alone
    merge nothing) and a GitHub noreply login. Bots are never matched to humans.
    """
    parent = {pid: pid for pid in book.individuals}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    seen: dict[tuple[str, bool, str], str] = {}
    for pid in sorted(book.individuals):
        p = book.individuals[pid]
        keys = {("email", p.bot, e) for e in p.emails}
        keys |= {("login", p.bot, lg) for e in p.emails if (lg := github_login(e))}
        for n in p.names:
            norm = normalise_name(n)
            if len(norm.split()) >= 2:
                keys.add(("name", p.bot, norm))
        for kind, bot, value in keys:
            other = seen.setdefault((kind, bot, value), pid)
            parent[root(pid)] = root(other)
    groups: dict[str, set[str]] = {}
    for pid in parent:
        groups.setdefault(root(pid), set()).add(pid)
    return sorted((frozenset(g) for g in groups.values() if len(g) > 1), key=sorted)


def export_sortinghat(book: IdentityBook) -> dict[str, Any]:
    """The book in SortingHat 0.7's JSON export: one identity per (email, name), source git."""
    orgs = sorted({e.organisation for p in book.individuals.values() for e in p.enrolments})
    out: dict[str, Any] = {}
    for pid in sorted(book.individuals):
        p = book.individuals[pid]
        name = min(p.names) if p.names else None
        out[pid] = {
            "uuid": pid,
            "profile": {
                "uuid": pid,
                "name": name,
                "email": min(p.emails),
                "is_bot": p.bot,
                "gender": None,
                "gender_acc": None,
                "country": None,
            },
            "identities": [
                {
                    "id": f"{pid}:{e}:{n or ''}",
                    "uuid": pid,
                    "name": n,
                    "email": e,
                    "username": None,
                    "source": "git",
                }
                for e in sorted(p.emails)
                for n in (list[str | None](sorted(p.names)) or [None])
            ],
            "enrollments": [
                {
                    "organization": e.organisation,
                    "uuid": pid,
                    "start": f"{e.start.isoformat()}T00:00:00",
                    "end": f"{e.end.isoformat()}T00:00:00",
                }
                for e in p.enrolments
            ],
        }
    return {"blacklist": [], "organizations": {o: [] for o in orgs}, "uidentities": out}


def import_sortinghat(doc: Mapping[str, Any]) -> IdentityBook:
    """A book from a SortingHat JSON export; an email claimed twice or bad dates are refused."""
    uids = doc.get("uidentities")
    if not isinstance(uids, Mapping):
        raise IdentityError("a SortingHat export needs a 'uidentities' object")
    people: dict[str, Individual] = {}
    owner: dict[str, str] = {}
    for key, u in uids.items():
        if not isinstance(u, Mapping):
            raise IdentityError(f"uidentity {key!r} is not an object")
        pid = str(u.get("uuid") or key)
        profile = u.get("profile") or {}
        emails, names = set(), set()
        for ident in u.get("identities") or []:
            email = (ident.get("email") or "").strip().lower()
            if not email:
                continue  # a username-only identity of another source: nothing of git's
            if owner.setdefault(email, pid) != pid:
                raise IdentityError(f"email {email} belongs to both {owner[email]} and {pid}")
            emails.add(email)
            if ident.get("name"):
                names.add(str(ident["name"]))
        if not emails:
            continue
        if profile.get("name"):
            names.add(str(profile["name"]))
        enrolments = tuple(
            Enrolment(
                str(e["organization"]), _day(e.get("start"), MIN_DATE), _day(e.get("end"), MAX_DATE)
            )
            for e in u.get("enrollments") or []
        )
        people[pid] = Individual(
            pid,
            frozenset(emails),
            frozenset(names),
            bool(profile.get("is_bot")),
            _checked(enrolments),
        )
    return IdentityBook(people)


def _day(value: Any, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise IdentityError(f"enrolment date {value!r} is not an ISO date") from None
