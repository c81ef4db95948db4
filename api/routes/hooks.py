"""Push webhooks: a forge tells metre of a push, metre polls the repository at once.

Authenticated by the signature over the body with the repository's own secret, never by an
API token (api/security.py lets `/api/v1/hooks/*` through to here; the rate limit still
applies). The checks run in this order, and a refusal changes nothing: size (413), content
type (415), a JSON object (400), delivery id (400), a repository URL in the payload (400),
registered repositories matching it (404), signature (403); then an event that is not a push
is acknowledged (200) and ignored; paused or abandoned (409), replay (409). docs/webhooks.md
is the user's side; the pure parts are api/webhooks.py.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Path, Request

from metre.api.deps import SettingsDep, StoreDep
from metre.api.responses import OrjsonResponse
from metre.api.schemas import ErrorOut
from metre.api.webhooks import PROVIDERS, delivery_id, matching, payload_urls, verify
from metre.processors import webhookstore

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

ProviderName = Annotated[
    Literal["github", "gitlab", "gitea", "generic"],
    Path(description="The forge sending the webhook, or `generic` (docs/webhooks.md)"),
]


async def _body(request: Request, limit: int) -> bytes:
    """The raw body (the signature covers its exact bytes), refused past `limit` bytes
    without reading it whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the webhook body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the webhook body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/hooks/{provider}",
    status_code=202,
    summary="A push webhook: poll the repositories it names now",
    description="Authenticated by its signature against the repository's webhook secret "
    "(`webhook_secret` at registration or by PATCH), not by an API token. GitHub: "
    "X-Hub-Signature-256; Gitea: X-Gitea-Signature; GitLab: X-Gitlab-Token; generic: "
    "X-Metre-Signature (docs/webhooks.md). Events other than pushes are acknowledged (200) "
    "and ignored.",
    responses={
        200: {"description": "Not a push: acknowledged, nothing polled"},
        202: {"description": "Accepted: the repositories are polled now"},
        400: {"model": ErrorOut, "description": "Not JSON, no repository URL, no delivery id"},
        403: {"model": ErrorOut, "description": "Missing or wrong signature, or no secret set"},
        404: {"model": ErrorOut, "description": "No registered repository has this URL"},
        409: {"model": ErrorOut, "description": "A replayed delivery, or a paused repository"},
        413: {"model": ErrorOut, "description": "Body too large"},
        415: {"model": ErrorOut, "description": "Not application/json"},
    },
)
async def receive(
    provider: ProviderName, request: Request, store: StoreDep, settings: SettingsDep
) -> OrjsonResponse:
    hook = PROVIDERS[provider]
    body = await _body(request, settings.webhook_max_bytes)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise HTTPException(
            415, "the webhook must send application/json (set the webhook's content type)"
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HTTPException(400, "the webhook body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise HTTPException(400, "the webhook body is not a JSON object")
    delivery = delivery_id(hook, request.headers)
    if delivery is None:
        names = " or ".join(hook.delivery_headers)
        raise HTTPException(400, f"the webhook has no delivery id ({names})")
    urls = payload_urls(hook, payload)
    if not urls:
        raise HTTPException(400, "the payload names no repository URL")

    registered = await webhookstore.targets(store)
    found = set(matching(urls, ((t.id, t.url) for t in registered)))
    candidates = [t for t in registered if t.id in found]
    # With reads behind a token, whether a URL is registered is not told to a caller who
    # cannot sign: an unknown repository gets the bad signature's answer.
    hide = settings.read_requires_token
    if not candidates and not hide:
        raise HTTPException(404, f"no registered repository matches {urls[0]}")
    signature = request.headers.get(hook.signature_header)
    if signature is None:
        raise HTTPException(403, f"the webhook is not signed (no {hook.signature_header} header)")
    signed = [
        t
        for t in candidates
        if t.secret is not None and verify(hook, t.secret, signature, delivery, body)
    ]
    if not signed:
        if candidates and all(t.secret is None for t in candidates) and not hide:
            which = ", ".join(str(t.id) for t in candidates)
            raise HTTPException(
                403,
                f"repository {which} has no webhook secret: set one with PATCH "
                '/api/v1/repos/{id} {"webhook_secret": ...}',
            )
        raise HTTPException(403, "the webhook signature does not match the repository's secret")

    event = request.headers.get(hook.event_header) if hook.event_header else None
    if hook.event_header is not None and event not in hook.push_events:
        return OrjsonResponse(
            {"delivery": delivery, "polled": [], "ignored": f"event {event!r} is not a push"},
            status_code=200,
        )
    stopped = [t for t in signed if t.state in ("paused", "abandoned")]
    if stopped and len(stopped) == len(signed):
        t = stopped[0]
        raise HTTPException(409, f"repository {t.id} is {t.state}: resume it to poll it")
    ids = [t.id for t in signed if t not in stopped]
    seen = await webhookstore.accept_delivery(
        store, provider, delivery, settings.webhook_replay_window, ids
    )
    if seen is not None:
        raise HTTPException(
            409, f"delivery {delivery} was already received at {seen.isoformat()}: a replay"
        )
    log.info("%s push webhook %s: polling repositories %s", provider, delivery, ids)
    body_out: dict[str, Any] = {"delivery": delivery, "polled": ids}
    return OrjsonResponse(body_out, status_code=202)
