"""Notification targets and rules (configured here), and what was raised and delivered.

Target URLs pass the same address rules as repository URLs (schemes, private hosts), checked
at registration and again at each delivery. Chat webhook URLs carry their secret in the path,
so answers show only the scheme and host.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from metre.api.deps import SettingsDep, StoreDep
from metre.api.responses import OrjsonResponse
from metre.api.routes.repos import _ERRORS as REPO_ERRORS
from metre.api.schemas import ErrorOut
from metre.ingest.urlpolicy import InvalidRepositoryURL, pinned_address
from metre.processors.delivery import check_target
from metre.processors.notify_rules import DEFAULT_THRESHOLDS, REPO_KINDS, RuleKind
from metre.processors.notify_store import NotifyStore, UnknownTarget

router = APIRouter(tags=["notifications"], prefix="/notifications")

Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
BODY_ID_MAX = 2**53 - 1
"""Ids in bodies: the largest integer every JSON reader holds exactly (and the OpenAPI
document, which writes body bounds as floats, states exactly)."""
Limit = Annotated[int, Query(ge=1, le=1000, description="Newest first, at most this many")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such target or rule"},
    422: {"model": ErrorOut, "description": "Invalid input, with the reason"},
    503: REPO_ERRORS[503],
}
_READ: dict[int | str, dict[str, Any]] = {503: REPO_ERRORS[503]}


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["slack", "mattermost", "webhook"] = Field(
        description="slack and mattermost: an incoming-webhook URL; webhook: any JSON receiver"
    )
    url: str = Field(min_length=1, max_length=2048, description="Where digests are POSTed")
    name: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")


class TargetOut(BaseModel):
    id: int
    kind: str
    name: str
    url: str = Field(description="Scheme and host only: the path may hold the webhook's secret")
    created_at: str


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: RuleKind
    target_id: int = Field(ge=1, le=BODY_ID_MAX)
    repo_id: int | None = Field(
        default=None,
        ge=1,
        le=BODY_ID_MAX,
        description="One repository (failing, stale, truck_factor); unset: every repository",
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1e12,
        description="Per kind (docs/notifications.md); unset: the default",
    )


class RuleOut(BaseModel):
    id: int
    kind: str
    repo_id: int | None
    threshold: float
    target_id: int
    created_at: str


class TargetList(BaseModel):
    targets: list[TargetOut]


class RuleList(BaseModel):
    rules: list[RuleOut]


class AlertOut(BaseModel):
    id: int
    rule_id: int
    target_id: int
    repo_id: int | None
    kind: str
    resolved: bool = Field(description="The condition ended (a recovery), not started")
    message: str
    raised_at: str
    delivery_id: int | None = Field(description="The digest that carried it; null: waiting")


class AlertList(BaseModel):
    alerts: list[AlertOut]


class DeliveryOut(BaseModel):
    id: int
    target_id: int
    status: Literal["pending", "delivered", "failed"]
    alerts: int
    attempts: int
    next_attempt_at: str | None = Field(description="While pending: when it is tried next")
    last_error: str | None
    created_at: str
    delivered_at: str | None


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


_NOT_JSON: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body is not valid JSON"}
}


def _notes(store: Any) -> NotifyStore:
    return NotifyStore(store.pool)


def _resolve(host: str, port: int) -> list[str]:
    return [str(i[4][0]) for i in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


@router.post(
    "/targets",
    status_code=201,
    summary="Add a delivery target (Slack, Mattermost or a JSON webhook)",
    responses={201: {"model": TargetOut}, **_NOT_JSON, **_ERRORS},
)
async def add_target(body: TargetIn, store: StoreDep, settings: SettingsDep) -> OrjsonResponse:
    policy = settings.url_policy
    try:
        remote = check_target(body.url, policy)
        await asyncio.to_thread(pinned_address, remote, policy, _resolve)
    except InvalidRepositoryURL as exc:
        raise HTTPException(422, str(exc)) from exc
    return OrjsonResponse(await _notes(store).add_target(body.kind, body.url, body.name), 201)


@router.get("/targets", summary="Delivery targets", responses={200: {"model": TargetList}, **_READ})
async def targets(store: StoreDep) -> OrjsonResponse:
    return OrjsonResponse({"targets": await _notes(store).list_targets()})


@router.delete(
    "/targets/{target_id}",
    status_code=204,
    summary="Remove a target, its rules and its alerts",
    responses=_ERRORS,
)
async def delete_target(target_id: Id, store: StoreDep) -> Response:
    if not await _notes(store).delete_target(target_id):
        raise HTTPException(404, f"no notification target {target_id}")
    return Response(status_code=204)


@router.post(
    "/rules",
    status_code=201,
    summary="Add a rule: what to watch, and which target hears of it",
    responses={201: {"model": RuleOut}, **_NOT_JSON, **_ERRORS},
)
async def add_rule(body: RuleIn, store: StoreDep) -> OrjsonResponse:
    if body.repo_id is not None:
        if body.kind not in REPO_KINDS:
            raise HTTPException(422, f"a {body.kind} rule watches the pipeline, not one repository")
        if await store.get_repo(body.repo_id) is None:
            raise HTTPException(422, f"no repository {body.repo_id}")
    threshold = body.threshold if body.threshold is not None else DEFAULT_THRESHOLDS[body.kind]
    try:
        rule = await _notes(store).add_rule(body.kind, body.repo_id, threshold, body.target_id)
    except UnknownTarget:
        raise HTTPException(422, f"no notification target {body.target_id}") from None
    return OrjsonResponse(rule, 201)


@router.get("/rules", summary="Notification rules", responses={200: {"model": RuleList}, **_READ})
async def rules(store: StoreDep) -> OrjsonResponse:
    return OrjsonResponse({"rules": await _notes(store).list_rules()})


@router.delete("/rules/{rule_id}", status_code=204, summary="Remove a rule", responses=_ERRORS)
async def delete_rule(rule_id: Id, store: StoreDep) -> Response:
    if not await _notes(store).delete_rule(rule_id):
        raise HTTPException(404, f"no notification rule {rule_id}")
    return Response(status_code=204)


@router.get(
    "/alerts",
    summary="Alerts raised, newest first, with the digest that carried each",
    responses={200: {"model": AlertList}, **_READ},
)
async def alerts(store: StoreDep, limit: Limit = 100) -> OrjsonResponse:
    return OrjsonResponse({"alerts": await _notes(store).list_alerts(limit)})


@router.get(
    "/deliveries",
    summary="Digests sent or being retried: status, attempts, the last error",
    responses={200: {"model": DeliveryList}, **_READ},
)
async def deliveries(store: StoreDep, limit: Limit = 100) -> OrjsonResponse:
    return OrjsonResponse({"deliveries": await _notes(store).list_deliveries(limit)})
