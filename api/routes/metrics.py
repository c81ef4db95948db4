"""The metric endpoints generated from the specs: a repository's form and, for the metrics
that have one, the organisation-wide form `/api/v1/metrics/<name>?repos=1,2` (all
repositories when omitted).

Each `MetricSpec` with a `route` (processors/metrics/spec.py) gets
`GET /api/v1/repos/{repo_id}/metrics/<name>`: its parameters validated from the spec
(api/specquery.py), resolved by the spec, read and derived by the spec's reader, and served
through metre.api.provenance.serve (provenance, ETag, 304, cached until the watermark moves).
Adding a metric of this kind needs no edit here.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and
# their parameter type is local to the function that makes each endpoint.
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from metre.api import schemas
from metre.api.deps import ReadStoreDep
from metre.api.provenance import parse_repos, serve
from metre.api.routes.repos import _ERRORS, RepoId
from metre.api.specquery import Values, query
from metre.processors.metrics.registry import SPECS
from metre.processors.metrics.spec import MetricSpec

router = APIRouter(tags=["metrics"])

Repos = Annotated[
    str | None,
    Query(description="Comma-separated repository ids; all repositories when omitted"),
]
_NOT_MODIFIED: dict[int | str, dict[str, Any]] = {304: {"description": "Not modified"}}

Endpoint = Callable[..., Awaitable[Response]]

_KEPT_NAMES = {"activity": "activity", "authors": "authors"}
"""Route names (hence OpenAPI operationIds) of repository forms that were written by hand
before the routes were generated, kept so that clients generated from the document keep
their method names; every other one is repo_<name>."""


def resolved(spec: MetricSpec, values: Values) -> dict[str, Any]:
    """The spec's parameters of a request; 422 when the spec refuses them together."""
    try:
        return spec.resolve(values)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


def _responses(model: str | None) -> dict[int | str, dict[str, Any]]:
    ok: dict[int | str, dict[str, Any]] = {}
    if model is not None:
        ok[200] = {"model": vars(schemas)[model]}  # a misspelt model fails at import
    return {**ok, **_NOT_MODIFIED, **_ERRORS}


def _repo_endpoint(spec: MetricSpec) -> Endpoint:
    assert spec.route is not None
    route = spec.route
    Params = Annotated[Values, Depends(query(spec))]

    async def endpoint(
        request: Request, repo_id: RepoId, store: ReadStoreDep, values: Params
    ) -> Response:
        params = resolved(spec, values)

        async def compute(ids: list[int]) -> dict[str, Any]:
            return {"repo_id": repo_id, **await route.read(store, ids, params)}

        return await serve(
            request, store, spec.name, params, compute, repo_id=repo_id, people=route.people
        )

    return endpoint


def _org_endpoint(spec: MetricSpec) -> Endpoint:
    assert spec.route is not None
    route = spec.route
    Params = Annotated[Values, Depends(query(spec))]

    async def endpoint(
        request: Request, store: ReadStoreDep, values: Params, repos: Repos = None
    ) -> Response:
        ids = parse_repos(repos)
        params = resolved(spec, values)

        async def compute(ids: list[int]) -> dict[str, Any]:
            return await route.read(store, ids, params)

        return await serve(
            request, store, spec.name, params, compute, repo_ids=ids, people=route.people
        )

    return endpoint


def add_routes(target: APIRouter, specs: tuple[MetricSpec, ...]) -> None:
    """The repository form of every spec with a route, and the organisation-wide forms."""
    for spec in specs:
        if spec.route is None:
            continue
        ident = spec.name.replace("-", "_")
        r = spec.route
        target.add_api_route(
            f"/repos/{{repo_id}}/metrics/{spec.name}",
            _repo_endpoint(spec),
            methods=["GET"],
            name=_KEPT_NAMES.get(spec.name, f"repo_{ident}"),
            summary=r.summary,
            responses=_responses(r.response),
        )
    for spec in specs:
        if spec.route is None or not spec.org:
            continue
        ident = spec.name.replace("-", "_")
        r = spec.route
        target.add_api_route(
            f"/metrics/{spec.name}",
            _org_endpoint(spec),
            methods=["GET"],
            name=f"org_{ident}",
            summary=r.org_summary or r.summary,
            responses=_responses(r.org_response or r.response),
        )


add_routes(router, SPECS)
