"""Registering repositories, their state, polling on demand, and single commits."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response
from pydantic import Field, SecretStr

from metre.api.deps import SettingsDep, StoreDep
from metre.api.paging import PageLimit, PageOffset, page
from metre.api.responses import OrjsonResponse
from metre.api.schemas import (
    INT64_MAX,
    CommitOut,
    ErrorOut,
    Input,
    PollAccepted,
    RepoIn,
    RepoList,
    RepoOut,
)
from metre.ingest.branches import branch_names
from metre.ingest.mirrordir import mirror_path
from metre.ingest.repourls import check_host, validate_url
from metre.ingest.urlpolicy import InvalidRepositoryURL
from metre.processors import webhookstore
from metre.processors.commitreads import AmbiguousSha
from metre.processors.registry import RepoExists, RepoRow

router = APIRouter(tags=["repositories"])

RepoId = Annotated[int, Path(ge=1, le=INT64_MAX, description="Repository id")]
Sha = Annotated[
    str,
    Path(min_length=7, max_length=64, pattern="^[0-9a-fA-F]+$", description="Commit sha or prefix"),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such repository or commit"},
    422: {"model": ErrorOut, "description": "Invalid input, with the reason"},
    503: {"model": ErrorOut, "description": "The database is unavailable: retry after Retry-After"},
}

# git check-ref-format, the parts that matter for a branch name given by a user.
_BAD_BRANCH = re.compile(r"(^[-/.])|(\.\.)|([\x00-\x20\x7f~^:?*\[\\])|(@\{)|(/$)|(\.lock$)|(//)")


def repo_json(r: RepoRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "url": r.url,
        "branch": r.branch,
        "state": r.state,
        "error": r.error,
        "head": r.head,
        "commits": r.commits,
        "progress": {"done": r.progress_done, "total": r.progress_total},
        "lagging": r.lagging_reason is not None,
        "lagging_reason": r.lagging_reason,
        "last_polled_at": r.last_polled_at,
        "next_poll_at": r.next_poll_at,
        "created_at": r.created_at,
        "webhook": r.webhook,
    }


@router.post(
    "/repos",
    status_code=201,
    summary="Register a repository",
    responses={
        201: {"model": RepoOut},
        400: {"model": ErrorOut, "description": "The body is not valid JSON"},
        409: {"model": ErrorOut},
        **_ERRORS,
    },
)
async def add_repo(body: RepoIn, store: StoreDep, settings: SettingsDep) -> OrjsonResponse:
    if body.branch is not None and _BAD_BRANCH.search(body.branch):
        raise HTTPException(422, f"branch {body.branch!r} is not a valid branch name")
    policy = settings.url_policy
    try:
        url = await asyncio.to_thread(validate_url, body.url, policy=policy)
        # The same policy the fetch applies: refuse now a host that does not resolve or
        # resolves to a refused address, rather than register a repository that must fail.
        await asyncio.to_thread(check_host, url, policy)
    except InvalidRepositoryURL as exc:
        raise HTTPException(422, str(exc)) from exc
    try:
        # The decision is stored with the repository: pollers apply it, not their own settings.
        row = await store.add_repo(url, body.branch, policy.to_json())
    except RepoExists as exc:
        raise HTTPException(409, f"repository {url} is already registered") from exc
    if body.webhook_secret is not None:
        await webhookstore.set_secret(store, row.id, body.webhook_secret.get_secret_value())
        row = _found(await store.get_repo(row.id), row.id)
    await store.request_poll(row.id)
    return OrjsonResponse(repo_json(row), status_code=201)


@router.get(
    "/repos",
    summary="All repositories, by id",
    responses={200: {"model": RepoList}, 503: _ERRORS[503]},
)
async def list_repos(
    store: StoreDep, limit: PageLimit = None, offset: PageOffset = 0
) -> OrjsonResponse:
    rows = await store.list_repos()
    repos = [repo_json(r) for r in page(rows, limit, offset)]
    return OrjsonResponse({"repos": repos, "total": len(rows), "limit": limit, "offset": offset})


def _found(row: RepoRow | None, repo_id: int) -> RepoRow:
    """The row a store call returned, or the one 404 every repository route answers."""
    if row is None:
        raise HTTPException(404, f"no repository with id {repo_id}")
    return row


async def _repo_or_404(store: StoreDep, repo_id: int) -> RepoRow:
    return _found(await store.get_repo(repo_id), repo_id)


@router.get(
    "/repos/{repo_id}", summary="One repository", responses={200: {"model": RepoOut}, **_ERRORS}
)
async def get_repo(repo_id: RepoId, store: StoreDep) -> OrjsonResponse:
    return OrjsonResponse(repo_json(await _repo_or_404(store, repo_id)))


class RepoPatch(Input):
    """A change to a registered repository: its branch, its webhook secret, or both (a field
    left out is left as it is)."""

    branch: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Branch to track from the next poll on; null: the remote's HEAD. Commits "
        "no longer reachable are retracted from every metric, new ones ingested.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        min_length=8,
        max_length=256,
        description="Secret its push webhooks are signed with (docs/webhooks.md); null: none "
        "(webhooks refused). Stored, never returned.",
    )


async def _check_branch_exists(settings: SettingsDep, row: RepoRow, branch: str) -> None:
    """422 when `branch` is not one of the repository's branches: those of a local source
    itself, those of a remote as its mirror has them (every branch, as of the last poll).

    Nothing to read (a remote never polled yet, a mirror not on this machine, as for a
    distributed API that does not share the pollers' disk): the poll decides.
    """
    short = branch.removeprefix("refs/heads/")
    local = row.url.startswith("/")
    source = FsPath(row.url) if local else mirror_path(settings.mirrors_dir, row.id)
    names = await asyncio.to_thread(branch_names, source)
    if not names or short.encode() in names:
        return
    listed = ", ".join(sorted(n.decode(errors="replace") for n in names)[:20])
    where = "" if local else " as of its last poll (poll it first to see a new branch)"
    raise HTTPException(
        422, f"branch {short!r} does not exist in the repository{where}; its branches: {listed}"
    )


@router.patch(
    "/repos/{repo_id}",
    summary="Change the tracked branch or the webhook secret",
    description="The branch must be one of the repository's: a local repository's own, a "
    "remote's as of its last poll (422 otherwise, naming those it has); a remote never polled "
    "yet takes any valid name.",
    responses={
        200: {"model": RepoOut},
        400: {"model": ErrorOut, "description": "The body could not be read"},
        **_ERRORS,
    },
)
async def patch_repo(
    repo_id: RepoId, body: RepoPatch, store: StoreDep, settings: SettingsDep
) -> OrjsonResponse:
    given = body.model_fields_set
    if not given:
        raise HTTPException(422, "nothing to change: give branch, webhook_secret or both")
    if body.branch is not None and _BAD_BRANCH.search(body.branch):
        raise HTTPException(422, f"branch {body.branch!r} is not a valid branch name")
    current = await _repo_or_404(store, repo_id)
    if body.branch is not None:
        await _check_branch_exists(settings, current, body.branch)
    if "webhook_secret" in given:
        secret = body.webhook_secret
        value = None if secret is None else secret.get_secret_value()
        if not await webhookstore.set_secret(store, repo_id, value):
            raise HTTPException(404, f"no repository with id {repo_id}")
    if "branch" in given:
        _found(await store.set_branch(repo_id, body.branch), repo_id)
        await store.request_poll(repo_id)
    row = _found(await store.get_repo(repo_id), repo_id)
    return OrjsonResponse(repo_json(row))


@router.post(
    "/repos/{repo_id}/poll",
    status_code=202,
    summary="Poll the repository now",
    responses={
        202: {"model": PollAccepted},
        409: {"model": ErrorOut, "description": "Paused or abandoned: resume it"},
        **_ERRORS,
    },
)
async def poll_repo(repo_id: RepoId, store: StoreDep) -> OrjsonResponse:
    row = await _repo_or_404(store, repo_id)
    if row.state in ("paused", "abandoned"):
        raise HTTPException(409, f"repository {repo_id} is {row.state}: resume it to poll it")
    await store.request_poll(repo_id)
    return OrjsonResponse({"id": row.id, "state": row.state}, status_code=202)


@router.delete(
    "/repos/{repo_id}",
    status_code=204,
    summary="Remove a repository",
    description="Deletes the repository, its commits, its metrics and (soon after) its mirror; "
    "organisation-wide metrics stop counting it at once. A retraction of each of its commits "
    "and a removal notice are then published on the topics (docs/events.md).",
    responses={204: {"description": "Removed"}, **_ERRORS},
)
async def delete_repo(repo_id: RepoId, store: StoreDep) -> Response:
    if not await store.delete_repo(repo_id):
        raise HTTPException(404, f"no repository with id {repo_id}")
    return Response(status_code=204)


@router.post(
    "/repos/{repo_id}/pause",
    summary="Stop polling the repository",
    description="A paused repository (state `paused`) keeps its metrics and is not polled "
    "until resumed; a poll under way finishes.",
    responses={200: {"model": RepoOut}, **_ERRORS},
)
async def pause_repo(repo_id: RepoId, store: StoreDep) -> OrjsonResponse:
    return OrjsonResponse(repo_json(_found(await store.pause_repo(repo_id), repo_id)))


@router.post(
    "/repos/{repo_id}/resume",
    summary="Poll a paused or abandoned repository again",
    description="Polls at once; an abandoned repository starts its backoff from the beginning.",
    responses={200: {"model": RepoOut}, **_ERRORS},
)
async def resume_repo(repo_id: RepoId, store: StoreDep) -> OrjsonResponse:
    return OrjsonResponse(repo_json(_found(await store.resume_repo(repo_id), repo_id)))


@router.get(
    "/repos/{repo_id}/commits/{sha}",
    summary="One commit (full sha, or a prefix of at least 7 that names one) with its files",
    responses={
        200: {"model": CommitOut},
        409: {"model": ErrorOut, "description": "The prefix names more than one commit"},
        **_ERRORS,
    },
)
async def get_commit(repo_id: RepoId, sha: Sha, store: StoreDep) -> OrjsonResponse:
    await _repo_or_404(store, repo_id)
    try:
        commit = await store.get_commit(repo_id, sha.lower())
    except AmbiguousSha as exc:
        shown = ", ".join(exc.candidates) + (" …" if len(exc.candidates) == 10 else "")
        raise HTTPException(
            409, f"{sha} is ambiguous in repository {repo_id}: it could be {shown}"
        ) from None
    if commit is None:
        raise HTTPException(404, f"no commit {sha} ingested in repository {repo_id}")
    return OrjsonResponse(commit)
