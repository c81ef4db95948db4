"""Identities: individuals (sets of author emails), merge, split, organisations, bots, the
matcher's proposals, SortingHat JSON and CSV import/export (processors/identities.py is the
model, processors/identitystore.py its storage).

Every change runs the pure model first: a refused one is a 404 (an unknown individual) or a
422 (the reason) and writes nothing. An accepted one takes effect on the people metrics at
once (they regroup at read time, their ETags carry the identity generation) and drops this
app's cached results.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from metre.api.deps import StoreDep
from metre.api.paging import PageLimit, PageOffset, page
from metre.api.provenance import forget_results
from metre.api.responses import OrjsonResponse
from metre.api.schemas import ErrorOut, Input, text_problem
from metre.processors import identitystore
from metre.processors.identities import (
    MAX_DATE,
    MIN_DATE,
    Enrolment,
    IdentityBook,
    IdentityError,
    Individual,
    UnknownIndividual,
    export_sortinghat,
    import_sortinghat,
    propose_merges,
)
from metre.processors.identitystore import individual_json

router = APIRouter(prefix="/identities", tags=["identities"])
T = TypeVar("T")

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
IndividualId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="Individual id")
]
IdField = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
EmailField = Annotated[str, Field(min_length=1, max_length=512)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such individual"},
    422: {"model": ErrorOut, "description": "Refused, with the reason; nothing changed"},
    503: {"model": ErrorOut, "description": "The database is unavailable: retry after Retry-After"},
}
_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body is not valid JSON"},
    **_ERRORS,
}
CSV_COLUMNS = ("individual", "email", "bot", "names", "enrolments")


class EnrolmentOut(BaseModel):
    organisation: str
    start: date | None = Field(description="First day (inclusive); null: open")
    end: date | None = Field(description="Last day (inclusive); null: open")


class IndividualOut(BaseModel):
    id: str
    email: str = Field(description="Its smallest email: how people metrics name it")
    emails: list[str]
    names: list[str] = Field(description="Names seen on its emails, and names given on import")
    bot: bool
    enrolments: list[EnrolmentOut]


class IndividualList(BaseModel):
    individuals: list[IndividualOut]
    total: int
    limit: int | None
    offset: int
    generation: int = Field(description="Changes so far (people metrics' provenance.identities)")


class Changed(BaseModel):
    individual: IndividualOut
    generation: int


class SplitOut(Changed):
    new: IndividualOut = Field(description="The individual the emails moved to")


class Proposal(BaseModel):
    individuals: list[IndividualOut]


class Proposals(BaseModel):
    groups: list[Proposal]
    generation: int


class Applied(BaseModel):
    merged: list[IndividualOut]
    generation: int


class Imported(BaseModel):
    imported: int = Field(description="Individuals read from the document")
    generation: int


class MergeIn(Input):
    into: IdField = Field(description="The individual that stays")
    individuals: list[IdField] = Field(
        min_length=1, max_length=1000, description="Individuals folded into it"
    )


class SplitIn(Input):
    emails: list[EmailField] = Field(
        min_length=1, max_length=1000, description="Emails moved out into a new individual"
    )


class EnrolIn(Input):
    organisation: str = Field(min_length=1, max_length=512)
    start: date | None = Field(default=None, description="First day; omitted: open")
    end: date | None = Field(default=None, description="Last day; omitted: open")


class UnenrolIn(Input):
    organisation: str = Field(min_length=1, max_length=512)
    start: date | None = Field(
        default=None, description="Only the enrolment from this day; omitted: every one"
    )


class BotIn(Input):
    bot: bool


class ApplyIn(Input):
    groups: list[list[IdField]] = Field(
        min_length=1,
        max_length=1000,
        description="Groups to merge (each into its first id), e.g. from GET .../proposals",
    )
    generation: int | None = Field(
        default=None,
        ge=0,
        le=2**53 - 1,  # the OpenAPI document writes bounds as floats: exact up to 2^53
        description="Refuse (409) unless the identities are still at this generation",
    )


def _refused(exc: IdentityError) -> HTTPException:
    return HTTPException(404 if isinstance(exc, UnknownIndividual) else 422, str(exc))


async def _change(
    request: Request,
    store: Any,
    op: Callable[[IdentityBook], tuple[IdentityBook, T]],
    expect: int | None = None,
) -> tuple[T, IdentityBook, int]:
    try:
        value, book, generation = await identitystore.change(store, op, expect)
    except IdentityError as exc:
        raise _refused(exc) from None
    except identitystore.StaleGeneration as exc:
        raise HTTPException(
            409, f"the identities are at generation {exc.args[0]}, not {expect}: propose again"
        ) from None
    forget_results(request.app)
    return value, book, generation


def _one(book: IdentityBook, pid: str, generation: int, status: int = 200) -> OrjsonResponse:
    body = {"individual": individual_json(book.individuals[pid]), "generation": generation}
    return OrjsonResponse(body, status_code=status)


def _sorted(book: IdentityBook) -> list[Individual]:
    return sorted(book.individuals.values(), key=lambda p: (min(p.emails), p.id))


@router.get(
    "",
    summary="Individuals, by smallest email (every author email is one; most on their own)",
    responses={200: {"model": IndividualList}, 503: _ERRORS[503]},
)
async def list_individuals(
    store: StoreDep,
    email: Annotated[
        str | None, Query(max_length=512, description="Only the individual with this email")
    ] = None,
    bot: Annotated[bool | None, Query(description="Only bots (true) or only people")] = None,
    organisation: Annotated[
        str | None, Query(max_length=512, description="Only those ever enrolled in it")
    ] = None,
    limit: PageLimit = None,
    offset: PageOffset = 0,
) -> OrjsonResponse:
    book, generation = await identitystore.book(store)
    rows = _sorted(book)
    if email is not None:
        rows = [p for p in rows if email.lower() in p.emails]
    if bot is not None:
        rows = [p for p in rows if p.bot == bot]
    if organisation is not None:
        rows = [p for p in rows if any(e.organisation == organisation for e in p.enrolments)]
    return OrjsonResponse(
        {
            "individuals": [individual_json(p) for p in page(rows, limit, offset)],
            "total": len(rows),
            "limit": limit,
            "offset": offset,
            "generation": generation,
        }
    )


@router.get(
    "/proposals",
    summary="The matcher's proposed merges (same email, name or GitHub login); nothing applied",
    responses={200: {"model": Proposals}, 503: _ERRORS[503]},
)
async def proposals(store: StoreDep) -> OrjsonResponse:
    book, generation = await identitystore.book(store)
    groups = [
        {"individuals": [individual_json(book.individuals[i]) for i in _by_email(book, g)]}
        for g in propose_merges(book)
    ]
    return OrjsonResponse({"groups": groups, "generation": generation})


def _by_email(book: IdentityBook, ids: frozenset[str]) -> list[str]:
    return sorted(ids, key=lambda i: (min(book.individuals[i].emails), i))


@router.post(
    "/proposals",
    summary="Apply merges (the matcher's proposals or any groups): all or none",
    responses={
        200: {"model": Applied},
        409: {"model": ErrorOut, "description": "The identities changed since `generation`"},
        **_BODY,
    },
)
async def apply_proposals(body: ApplyIn, request: Request, store: StoreDep) -> OrjsonResponse:
    seen: set[str] = set()
    for group in body.groups:
        if len(set(group)) < 2:
            raise HTTPException(422, "each group needs at least two distinct individuals")
        if twice := sorted(seen & set(group)):
            raise HTTPException(422, f"individual {twice[0]} is in two groups")
        seen |= set(group)

    def op(book: IdentityBook) -> tuple[IdentityBook, list[str]]:
        for group in body.groups:
            book = book.merge(group[0], group[1:])
        return book, [g[0] for g in body.groups]

    into, book, generation = await _change(request, store, op, body.generation)
    merged = [individual_json(book.individuals[i]) for i in into]
    return OrjsonResponse({"merged": merged, "generation": generation})


@router.post(
    "/merge",
    summary="Merge individuals into one: emails, names, enrolments (which must not overlap)",
    responses={200: {"model": Changed}, **_BODY},
)
async def merge(body: MergeIn, request: Request, store: StoreDep) -> OrjsonResponse:
    def op(book: IdentityBook) -> tuple[IdentityBook, None]:
        return book.merge(body.into, body.individuals), None

    _, book, generation = await _change(request, store, op)
    return _one(book, body.into, generation)


@router.get(
    "/export",
    summary="Every individual as SortingHat 0.7's JSON export, or CSV (one row per email)",
    responses={200: {"content": {"text/csv": {}}}, 503: _ERRORS[503]},
)
async def export(
    store: StoreDep,
    format: Annotated[
        Literal["sortinghat", "csv"], Query(description="sortinghat (JSON) or csv")
    ] = "sortinghat",
) -> Response:
    book, _ = await identitystore.book(store)
    if format == "sortinghat":
        return OrjsonResponse(export_sortinghat(book))
    return Response(_csv(book), media_type="text/csv; charset=utf-8")


def _csv(book: IdentityBook) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for p in _sorted(book):
        j = individual_json(p)
        names = json.dumps(j["names"], ensure_ascii=False)
        enrolments = json.dumps(j["enrolments"], ensure_ascii=False)
        for e in j["emails"]:
            w.writerow([p.id, e, "true" if p.bot else "false", names, enrolments])
    return out.getvalue().encode()


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _checked_import(book: IdentityBook) -> IdentityBook:
    """Refuse ids the API could not address and emails a git author cannot have."""
    for pid, p in book.individuals.items():
        if not re.match(ID_PATTERN, pid):
            raise IdentityError(f"individual id {pid!r} is not of the form {ID_PATTERN}")
        for e in p.emails:
            if len(e) > 512 or any(c in e for c in "<>\n"):
                raise IdentityError(f"email {e!r} of {pid} is not an author email")
    return book


async def _import(request: Request, store: Any, imported: IdentityBook) -> OrjsonResponse:
    try:
        imported = _checked_import(imported)
    except IdentityError as exc:
        raise HTTPException(422, str(exc)) from None

    def op(book: IdentityBook) -> tuple[IdentityBook, int]:
        return book.overlay(imported), len(imported.individuals)

    n, _, generation = await _change(request, store, op)
    return OrjsonResponse({"imported": n, "generation": generation})


@router.post(
    "/import",
    summary="Import a SortingHat JSON export: each individual replaces the one with its id "
    "and takes its emails from whoever holds them; everything else is kept",
    responses={200: {"model": Imported}, **_BODY},
)
async def import_json(
    request: Request,
    store: StoreDep,
    doc: Annotated[dict[str, Any], Body(description="SortingHat 0.7's export (uidentities)")],
) -> OrjsonResponse:
    for text in _strings(doc):
        if problem := text_problem(text):
            raise HTTPException(422, f"the document {problem}")
    try:
        imported = import_sortinghat(doc)
    except (IdentityError, KeyError, TypeError, AttributeError) as exc:
        raise HTTPException(422, f"not a SortingHat export: {exc}") from None
    return await _import(request, store, imported)


@router.post(
    "/import/csv",
    summary="Import the CSV export's form (individual, email, bot, names, enrolments as JSON)",
    responses={200: {"model": Imported}, 415: {"model": ErrorOut}, **_BODY},
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_csv(request: Request, store: StoreDep) -> OrjsonResponse:
    if not request.headers.get("content-type", "").startswith("text/csv"):
        raise HTTPException(415, "send the CSV with Content-Type: text/csv")
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, "the CSV is not UTF-8") from None
    if problem := text_problem(text):
        raise HTTPException(422, f"the CSV {problem}")
    try:
        imported = _parse_csv(text)
    except IdentityError as exc:
        raise HTTPException(422, str(exc)) from None
    return await _import(request, store, imported)


def _parse_csv(text: str) -> IdentityBook:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or any(c not in rows[0] for c in ("individual", "email")):
        raise IdentityError(f"the CSV needs a header with at least individual,email: {CSV_COLUMNS}")
    doc: dict[str, Any] = {}
    for n, r in enumerate(rows, start=2):
        pid, email = (r.get("individual") or "").strip(), (r.get("email") or "").strip()
        if not pid or not email:
            raise IdentityError(f"CSV line {n}: individual and email are required")
        try:
            names = json.loads(r.get("names") or "[]")
            enrolments = json.loads(r.get("enrolments") or "[]")
        except ValueError:
            raise IdentityError(f"CSV line {n}: names and enrolments are JSON lists") from None
        if not isinstance(names, list) or not isinstance(enrolments, list):
            raise IdentityError(f"CSV line {n}: names and enrolments are JSON lists")
        bot = (r.get("bot") or "false").strip().lower()
        if bot not in ("true", "false"):
            raise IdentityError(f"CSV line {n}: bot is true or false, not {bot!r}")
        u = doc.setdefault(
            pid, {"uuid": pid, "profile": {"is_bot": False}, "identities": [], "enrollments": []}
        )
        u["profile"]["is_bot"] |= bot == "true"
        u["identities"].append({"email": email, "name": None})
        u["identities"].extend({"email": email, "name": str(x)} for x in names)
        for e in enrolments:
            if not isinstance(e, dict) or not e.get("organisation"):
                raise IdentityError(f"CSV line {n}: an enrolment needs an organisation")
            entry = {
                "organization": e["organisation"],
                "start": e.get("start"),
                "end": e.get("end"),
            }
            if entry not in u["enrollments"]:
                u["enrollments"].append(entry)
    try:
        return import_sortinghat({"uidentities": doc})
    except (KeyError, TypeError, AttributeError) as exc:
        raise IdentityError(f"the CSV does not describe individuals: {exc}") from None


@router.get(
    "/{individual_id}",
    summary="One individual: emails, names, bot flag, enrolments",
    responses={200: {"model": IndividualOut}, **_ERRORS},
)
async def get_individual(individual_id: IndividualId, store: StoreDep) -> OrjsonResponse:
    book, _ = await identitystore.book(store)
    found = book.individuals.get(individual_id)
    if found is None:
        raise HTTPException(404, f"no individual with id {individual_id!r}")
    return OrjsonResponse(individual_json(found))


@router.post(
    "/{individual_id}/split",
    summary="Move emails out of an individual into a new one",
    responses={200: {"model": SplitOut}, **_BODY},
)
async def split(
    individual_id: IndividualId, body: SplitIn, request: Request, store: StoreDep
) -> OrjsonResponse:
    def op(book: IdentityBook) -> tuple[IdentityBook, str]:
        return book.split(individual_id, body.emails)

    new, book, generation = await _change(request, store, op)
    return OrjsonResponse(
        {
            "individual": individual_json(book.individuals[individual_id]),
            "new": individual_json(book.individuals[new]),
            "generation": generation,
        }
    )


@router.post(
    "/{individual_id}/enrolments",
    status_code=201,
    summary="Enrol an individual in an organisation over a date range (no overlaps)",
    responses={201: {"model": Changed}, **_BODY},
)
async def enrol(
    individual_id: IndividualId, body: EnrolIn, request: Request, store: StoreDep
) -> OrjsonResponse:
    enrolment = Enrolment(body.organisation, body.start or MIN_DATE, body.end or MAX_DATE)

    def op(book: IdentityBook) -> tuple[IdentityBook, None]:
        return book.enrol(individual_id, enrolment), None

    _, book, generation = await _change(request, store, op)
    return _one(book, individual_id, generation, 201)


@router.post(
    "/{individual_id}/unenrol",
    summary="Remove an individual's enrolments in an organisation (or the one from `start`)",
    responses={200: {"model": Changed}, **_BODY},
)
async def unenrol(
    individual_id: IndividualId, body: UnenrolIn, request: Request, store: StoreDep
) -> OrjsonResponse:
    def op(book: IdentityBook) -> tuple[IdentityBook, None]:
        return book.unenrol(individual_id, body.organisation, body.start), None

    _, book, generation = await _change(request, store, op)
    return _one(book, individual_id, generation)


@router.put(
    "/{individual_id}/bot",
    summary="Flag an individual as a bot or as a person (bots=exclude leaves bots out)",
    responses={200: {"model": Changed}, **_BODY},
)
async def set_bot(
    individual_id: IndividualId, body: BotIn, request: Request, store: StoreDep
) -> OrjsonResponse:
    def op(book: IdentityBook) -> tuple[IdentityBook, None]:
        return book.set_bot(individual_id, body.bot), None

    _, book, generation = await _change(request, store, op)
    return _one(book, individual_id, generation)
