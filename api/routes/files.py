"""Per-file metric endpoints: files, hotspots, ownership, truck factor, coupling.

Thin routes: validation here, SQL in processors/filereads.py, derivations in
processors/metrics/*. Every result goes through metre.api.provenance.serve (provenance, ETag, 304,
cached until the repository's watermark moves). Ownership and truck factor share one
computation per repository state, kept in a small per-app memo so that paging through files
does not recompute it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from metre.api.deps import ReadStoreDep
from metre.api.provenance import serve
from metre.api.routes.repos import _ERRORS, RepoId
from metre.api.specquery import Values, query
from metre.contracts.paths import is_path_text
from metre.processors import filereads, identitystore
from metre.processors.metrics import coupling as coupling_metric
from metre.processors.metrics import files as files_metric
from metre.processors.metrics.ownership import OWNERSHIP, TRUCK_FACTOR, Ownership, ownership
from metre.processors.people import DEFAULT_BOTS, Bots
from metre.processors.reads import stamps
from metre.processors.store import PgStore

router = APIRouter(tags=["metrics"])

FilesQ = Annotated[Values, Depends(query(files_metric.FILES))]
HotspotsQ = Annotated[Values, Depends(query(files_metric.HOTSPOTS))]
OwnershipQ = Annotated[Values, Depends(query(OWNERSHIP))]
TruckFactorQ = Annotated[Values, Depends(query(TRUCK_FACTOR))]
CouplingQ = Annotated[Values, Depends(query(coupling_metric.SPEC))]
"""Each route's parameters, validated as their spec declares them (api/specquery.py)."""
_OK = {304: {"description": "Not modified"}, **_ERRORS}


@router.get(
    "/repos/{repo_id}/metrics/files",
    summary="Per file: commits, lines, authors, presence at head, latest change, length",
    responses=_OK,
)
async def files(
    request: Request,
    repo_id: RepoId,
    store: ReadStoreDep,
    params: FilesQ,
) -> Response:
    sort, exists, limit, offset = (params[k] for k in ("sort", "exists", "limit", "offset"))

    async def compute(ids: list[int]) -> dict[str, Any]:
        page = await filereads.files(store, ids[0], sort, exists, limit, offset)
        return {"repo_id": repo_id, **params, **page}

    return await serve(request, store, "files", params, compute, repo_id=repo_id)


@router.get(
    "/repos/{repo_id}/metrics/hotspots",
    summary="Files ranked by commits in a window x current lines (CodeScene's hotspots)",
    responses=_OK,
)
async def hotspots(
    request: Request,
    repo_id: RepoId,
    store: ReadStoreDep,
    params: HotspotsQ,
) -> Response:
    days, limit = params["days"], params["limit"]

    async def compute(ids: list[int]) -> dict[str, Any]:
        return {"repo_id": repo_id, **await filereads.hotspots(store, ids[0], days, limit)}

    return await serve(request, store, "hotspots", params, compute, repo_id=repo_id)


Owned = tuple[Ownership, dict[str, str]]
"""The computation and each author's individual id, by the email results name it with."""


class OwnershipMemo:
    """The latest ownership computations, by (repository, generation, watermark, identity
    generation, bots)."""

    def __init__(self, max_entries: int = 16) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[Any, ...], Owned] = OrderedDict()

    def clear(self) -> None:
        self._items.clear()

    async def get(self, store: PgStore, repo_id: int, bots: Bots = DEFAULT_BOTS) -> Owned:
        (s,) = await stamps(store, [repo_id])
        key = (repo_id, s.generation, s.watermark, await identitystore.generation(store), bots)
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            return found
        rows, counted, who = await filereads.people_file_authors(store, repo_id, bots)
        result = await asyncio.to_thread(ownership, rows, counted)  # the kernel: off the loop
        ids = {r.email: who.of(r.email).id for r in rows}
        if who.generation == key[3]:  # the mapping did not move under the read
            self._items[key] = (result, ids)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return result, ids


def _memo(request: Request) -> OwnershipMemo:
    memo: OwnershipMemo | None = getattr(request.app.state, "ownership_memo", None)
    if memo is None:
        memo = request.app.state.ownership_memo = OwnershipMemo()
    return memo


@router.get(
    "/repos/{repo_id}/metrics/ownership",
    summary="Main authors of each file present at head, by degree of authorship",
    responses=_OK,
)
async def ownership_route(
    request: Request,
    repo_id: RepoId,
    store: ReadStoreDep,
    params: OwnershipQ,
) -> Response:
    bots, limit, offset = params["bots"], params["limit"], params["offset"]

    async def compute(ids: list[int]) -> dict[str, Any]:
        o, who = await _memo(request).get(store, ids[0], bots)
        paths = list(o.files)[offset : offset + limit]  # path order (code point)
        page = [
            {
                "path": p,
                "authors": [{"email": e, "individual": who[e], "doa": d} for e, d in o.files[p]],
            }
            for p in paths
        ]
        return {"repo_id": repo_id, "total": len(o.files), **params, "files": page}

    return await serve(request, store, "ownership", params, compute, repo_id=repo_id, people=True)


@router.get(
    "/repos/{repo_id}/metrics/truck-factor",
    summary="Truck factor (Avelino et al.) and the authors removed, in order",
    responses=_OK,
)
async def truck_factor(
    request: Request, repo_id: RepoId, store: ReadStoreDep, params: TruckFactorQ
) -> Response:
    bots = params["bots"]

    async def compute(ids: list[int]) -> dict[str, Any]:
        o, who = await _memo(request).get(store, ids[0], bots)
        return {
            "repo_id": repo_id,
            "truck_factor": o.truck_factor,
            "files": len(o.files),
            "removed": [{"email": e, "individual": who[e], "files": n} for e, n in o.removed],
        }

    return await serve(
        request, store, "truck-factor", params, compute, repo_id=repo_id, people=True
    )


@router.get(
    "/repos/{repo_id}/metrics/coupling",
    summary="Files changed together: top pairs, or the partners of one file",
    responses=_OK,
)
async def coupling(
    request: Request,
    repo_id: RepoId,
    store: ReadStoreDep,
    values: CouplingQ,
) -> Response:
    path, max_files, min_shared, limit = (
        values[k] for k in ("path", "max_files", "min_shared", "limit")
    )
    if path is not None and not is_path_text(path):
        raise HTTPException(
            422,
            "path is not in metre's path form: write a backslash as \\\\ and a byte that is "
            "not UTF-8 as \\xNN (lower-case hex); NUL never occurs in a git path",
        )
    params = {"path": path, "max_files": max_files, "min_shared": min_shared, "limit": limit}

    async def compute(ids: list[int]) -> dict[str, Any]:
        if path is None:
            rows = await filereads.coupling(store, ids[0], max_files, min_shared, limit)
            pairs = [
                {
                    "a": r["path_a"],
                    "b": r["path_b"],
                    "shared": r["shared"],
                    "commits_a": r["commits_a"],
                    "commits_b": r["commits_b"],
                    "degree": r["degree"],
                }
                for r in rows
            ]
            return {"repo_id": repo_id, **params, "pairs": pairs}
        rows, commits = await filereads.partners(store, ids[0], path, max_files, min_shared, limit)
        partners = []
        for r in rows:
            other_is_b = r["path_a"] == path
            partners.append(
                {
                    "path": r["path_b"] if other_is_b else r["path_a"],
                    "shared": r["shared"],
                    "commits": r["commits_b"] if other_is_b else r["commits_a"],
                    "degree": r["degree"],
                }
            )
        return {"repo_id": repo_id, **params, "commits": commits, "partners": partners}

    return await serve(request, store, "coupling", params, compute, repo_id=repo_id)
