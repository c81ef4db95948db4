"""Provenance, ETags, revalidation and the result cache every metric endpoint shares (I/O).

A result is a function of (metric, version, parameters, the stamps of its repositories), so
that tuple is its identity: it names the cache entry and, hashed, the ETag. A stamp moves
whenever a batch changes a repository's metric tables (processors/sink.py: watermark and
generation), so nothing cached outlives the data it was computed from, and no invalidation
is needed. People metrics regroup emails through the identities, so their identity also holds
the identity generation (processors/identitystore.py), which every identity change moves.
Clients revalidate every time (`no-cache` semantics) and get 304 while unchanged.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import orjson
from fastapi import HTTPException, Request, Response

from metre.api.csvexport import CSV_MEDIA_TYPE, export, wants_csv
from metre.processors import identitystore
from metre.processors.metrics.catalogue import catalogue
from metre.processors.reads import Stamp, stamps
from metre.processors.sharedhistory import same_history
from metre.processors.store import PgStore

CACHE_CONTROL = "private, max-age=0, must-revalidate"
"""Results may change at any push: a cache may keep them but must revalidate (cheap: 304)."""

Compute = Callable[[list[int]], Awaitable[dict[str, Any]]]
T = TypeVar("T")


class ResultCache(Generic[T]):
    """Rendered results by ETag, least recently used first out; one per app (and one for
    the CSV representations)."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, T] = OrderedDict()

    def get(self, tag: str) -> T | None:
        body = self._items.get(tag)
        if body is not None:
            self._items.move_to_end(tag)
        return body

    def clear(self) -> None:
        """Forget every entry (an identity change: the people metrics' answers moved)."""
        self._items.clear()

    def put(self, tag: str, body: T) -> None:
        self._items[tag] = body
        self._items.move_to_end(tag)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


def _stamp_json(s: Stamp) -> dict[str, Any]:
    return {"repo_id": s.repo_id, "head": s.head, "watermark": s.watermark}


def etag(
    form: str,
    metric: str,
    version: int,
    params: dict[str, Any],
    ss: Sequence[Stamp],
    identities: int | None = None,
) -> str:
    """A strong ETag for the result identified by these (form: "repo" or "org");
    `identities`: the identity generation a people metric was read through."""
    ident: list[Any] = [
        form,
        metric,
        version,
        sorted(params.items()),
        [(s.repo_id, s.generation, s.watermark, s.head) for s in ss],
    ]
    if identities is not None:
        ident.append(identities)
    return '"' + hashlib.sha256(orjson.dumps(ident)).hexdigest()[:32] + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match header names `tag` (weak comparison, as RFC 9110 asks)."""
    if not if_none_match:
        return False
    bare = tag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        c = candidate.strip()
        if c == "*" or c.removeprefix("W/") == bare:
            return True
    return False


def parse_repos(raw: str | None) -> list[int] | None:
    """`repos=1,2,3` -> sorted unique ids; None (all repositories) when omitted."""
    if raw is None:
        return None
    try:
        ids = sorted({int(p) for p in raw.split(",")})
    except ValueError:
        raise HTTPException(
            422, "repos must be a comma-separated list of repository ids, e.g. repos=1,2"
        ) from None
    if not ids or ids[0] < 1 or ids[-1] > 2**63 - 1:
        raise HTTPException(422, "repository ids are positive integers")
    return ids


def _cache(request: Request) -> ResultCache[bytes]:
    cache: ResultCache[bytes] | None = getattr(request.app.state, "result_cache", None)
    if cache is None:
        cache = request.app.state.result_cache = ResultCache()
    return cache


def forget_results(app: Any) -> None:
    """Drop this app's cached results (JSON, CSV, ownership): called after an identity change.
    Not needed for correctness (people metrics carry the identity generation in their ETag,
    which also covers other API replicas), but nothing unreachable is kept."""
    for name in ("result_cache", "csv_cache", "ownership_memo"):
        cache = getattr(app.state, name, None)
        if cache is not None:
            cache.clear()


CsvEntry = tuple[bytes, dict[str, str]]


def _csv_cache(request: Request) -> ResultCache[CsvEntry]:
    cache: ResultCache[CsvEntry] | None = getattr(request.app.state, "csv_cache", None)
    if cache is None:
        cache = request.app.state.csv_cache = ResultCache(max_entries=256)
    return cache


def _response(
    body: bytes | None,
    tag: str,
    media_type: str = "application/json",
    extra: dict[str, str] | None = None,
) -> Response:
    # Vary: one URL has two representations (JSON, CSV), chosen by Accept.
    headers = {"ETag": tag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept", **(extra or {})}
    if body is None:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _wants_csv(request: Request) -> bool:
    """CSV on `?format=csv` or an Accept preferring text/csv (api/csvexport.py); 422 for
    another `format`."""
    try:
        return wants_csv(request.headers.get("accept"), request.query_params.get("format"))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def csv_tag(tag: str) -> str:
    """The CSV representation's ETag (another representation, another strong tag)."""
    return tag[:-1] + '-csv"'


async def serve(
    request: Request,
    store: PgStore,
    metric: str,
    params: dict[str, Any],
    compute: Compute,
    *,
    repo_id: int | None = None,
    repo_ids: list[int] | None = None,
    people: bool = False,
) -> Response:
    """Answer a metric request: 404 for unknown repositories, 304 when the client's ETag is
    current, else the cached or freshly computed result with its provenance.

    `repo_id` gives a repository's form; otherwise the organisation-wide form over `repo_ids`
    (all repositories when None). `compute` gets the repository ids. `people`: the result
    regroups emails by individual, so the identity generation is part of its identity.
    """
    entry = catalogue()[metric]
    as_csv = _wants_csv(request)
    wanted = [repo_id] if repo_id is not None else repo_ids
    ss = await stamps(store, wanted)
    if wanted is not None and len(ss) != len(wanted):
        missing = sorted(set(wanted) - {s.repo_id for s in ss})
        which = ", ".join(map(str, missing))
        raise HTTPException(404, f"no repository with id {which}")
    form = "repo" if repo_id is not None else "org"
    idgen = await identitystore.generation(store) if people else None
    tag = etag(form, metric, entry.version, params, ss, idgen)
    shown = csv_tag(tag) if as_csv else tag
    if matches(request.headers.get("if-none-match"), shown):
        return _response(None, shown)
    cache = _cache(request)
    body = cache.get(tag)
    cached = body is not None
    if body is None:
        ids = [s.repo_id for s in ss]
        # Organisation-wide, a history registered under several URLs counts once.
        dup = {} if repo_id is not None else await same_history(store, ids)
        result = await compute([i for i in ids if i not in dup])
        prov: dict[str, Any] = {"metric": metric, "version": entry.version, "params": params}
        if repo_id is not None:
            prov = {**_stamp_json(ss[0]), **prov}
        else:
            prov["repos"] = [_stamp_json(s) for s in ss]
            prov["same_history"] = [{"repo_id": k, "counted_as": v} for k, v in sorted(dup.items())]
        if idgen is not None:
            prov["identities"] = idgen
        body = orjson.dumps({**result, "provenance": prov}, option=orjson.OPT_NON_STR_KEYS)
        unchanged = await stamps(store, ids) == ss and (
            idgen is None or await identitystore.generation(store) == idgen
        )
        if unchanged:  # unchanged while computing: safe to keep
            cache.put(tag, body)
            cached = True
    if as_csv:
        return _csv_response(_csv_cache(request), metric, body, shown, keep=cached)
    return _response(body, tag)


def _csv_response(
    cache: ResultCache[CsvEntry], metric: str, body: bytes, tag: str, keep: bool
) -> Response:
    """The CSV of a JSON result, its provenance in headers; cached under its own tag, and
    only when the JSON itself could be."""
    entry = cache.get(tag)
    if entry is None:
        entry = export(metric, orjson.loads(body))
        if keep:
            cache.put(tag, entry)
    data, extra = entry
    return _response(data, tag, CSV_MEDIA_TYPE, extra)
