"""POSTing a digest to a target (I/O), under the same address rules as repository URLs.

A target URL was checked at registration (`check_target`); at delivery its host is resolved
again and every address checked, and the request goes to the address that was checked (the
TLS name and the Host header stay the target's), so a name that later resolves to a private
address (DNS rebinding) is refused instead of reached. Redirects are not followed: a target
that answers 3xx has failed.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from metre.ingest.urlpolicy import (
    InvalidRepositoryURL,
    Remote,
    UrlPolicy,
    parse_remote,
    pinned_address,
)

TARGET_SCHEMES = ("https", "http")


class DeliveryRefused(Exception):
    """The target may not be reached under this server's address rules."""


def check_target(url: str, policy: UrlPolicy) -> Remote:
    """The parsed target, or `InvalidRepositoryURL` saying which rule (and setting) refuses it.

    Only https (and http when METRE_ALLOWED_SCHEMES lists it) can carry a webhook."""
    scheme = url.split(":", 1)[0].lower()
    if scheme not in TARGET_SCHEMES:
        raise InvalidRepositoryURL(
            "a notification target must be an https:// URL (http:// when "
            "METRE_ALLOWED_SCHEMES lists http)"
        )
    web = UrlPolicy(
        policy.allowed_schemes & frozenset(TARGET_SCHEMES),
        allow_private_hosts=policy.allow_private_hosts,
        allow_local_paths=False,
    )
    remote = parse_remote(url, web)
    if remote.host is None:
        raise InvalidRepositoryURL("a notification target needs a host")
    return remote


def _resolve(host: str, port: int) -> Sequence[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    policy: UrlPolicy,
    *,
    delivery_id: int,
) -> None:
    """POST `body` to `url`; raises `DeliveryRefused` or `httpx.HTTPError` (status ≥ 300 too)."""
    try:
        remote = check_target(url, policy)
        assert remote.host is not None
        address = await asyncio.to_thread(pinned_address, remote, policy, _resolve)
    except InvalidRepositoryURL as exc:
        raise DeliveryRefused(str(exc)) from None
    target = httpx.URL(url)
    pinned = target.copy_with(host=address)
    headers = {
        "Host": target.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "User-Agent": "metre-notifier",
        # Receivers that see a delivery twice (a retry after a lost answer) can drop it.
        "X-Metre-Delivery": str(delivery_id),
    }
    answer = await client.post(
        pinned,
        content=orjson.dumps(body),
        headers=headers,
        extensions={"sni_hostname": remote.host},
    )
    if not 200 <= answer.status_code < 300:
        raise httpx.HTTPStatusError(
            f"the target answered {answer.status_code}", request=answer.request, response=answer
        )
