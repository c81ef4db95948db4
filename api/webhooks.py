"""Push webhooks of GitHub, GitLab, Gitea and metre's own generic form (pure).

What each provider sends, how its signature is checked, which payload fields name the
repository, and the canonical form two URLs of one repository share. The route
(api/routes/hooks.py) does the I/O; docs/webhooks.md is the user's side of the same.

Signatures are compared with `hmac.compare_digest` only (constant time in the length of the
expected value: the time taken says nothing about how much of a forged signature was right).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "GENERIC_DELIVERY",
    "GENERIC_SIGNATURE",
    "PROVIDERS",
    "Provider",
    "canonical",
    "generic_signature",
    "payload_urls",
    "verify",
]

GENERIC_SIGNATURE = "x-metre-signature"
GENERIC_DELIVERY = "x-metre-delivery"


@dataclass(frozen=True, slots=True)
class Provider:
    """How one forge's push webhooks look."""

    name: str
    signature_header: str
    """The header carrying the signature (or, for GitLab, the shared token)."""
    delivery_headers: tuple[str, ...]
    """Headers naming the delivery, first present wins (the replay check's key)."""
    event_header: str | None
    push_events: frozenset[str]
    """Values of `event_header` that are pushes (anything else is acknowledged, ignored)."""


PROVIDERS: dict[str, Provider] = {
    "github": Provider(
        "github",
        "x-hub-signature-256",
        ("x-github-delivery",),
        "x-github-event",
        frozenset({"push"}),
    ),
    "gitea": Provider(
        "gitea",
        "x-gitea-signature",
        ("x-gitea-delivery",),
        "x-gitea-event",
        frozenset({"push"}),
    ),
    "gitlab": Provider(
        "gitlab",
        "x-gitlab-token",
        # Idempotency-Key stays the same across GitLab's retries of one event (GitLab 17.4+);
        # older GitLab sends only the event's UUID.
        ("idempotency-key", "x-gitlab-event-uuid"),
        "x-gitlab-event",
        frozenset({"Push Hook", "Tag Push Hook"}),
    ),
    "generic": Provider("generic", GENERIC_SIGNATURE, (GENERIC_DELIVERY,), None, frozenset()),
}


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def generic_signature(secret: str, delivery: str, body: bytes) -> str:
    """The `X-Metre-Signature` of a generic delivery: the delivery id is signed with the body,
    so a captured request cannot be replayed under a new id."""
    return "sha256=" + _hmac_hex(secret, delivery.encode() + b"." + body)


def verify(provider: Provider, secret: str, signature: str, delivery: str, body: bytes) -> bool:
    """Whether `signature` (the provider's header, as received) is right for `body`."""
    given = signature.strip().encode()
    if provider.name == "github":
        expected = "sha256=" + _hmac_hex(secret, body)
    elif provider.name == "gitea":
        expected = _hmac_hex(secret, body)
    elif provider.name == "gitlab":
        expected = secret  # a shared token, not a signature (GitLab signs nothing)
    else:
        expected = generic_signature(secret, delivery, body)
    return hmac.compare_digest(given, expected.encode())


_URL_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    # (object, field) of the payload naming the repository, in every form a forge gives.
    "github": tuple(
        ("repository", f) for f in ("clone_url", "html_url", "ssh_url", "git_url", "url")
    ),
    "gitea": tuple(("repository", f) for f in ("clone_url", "html_url", "ssh_url")),
    "gitlab": (
        *(("project", f) for f in ("git_http_url", "git_ssh_url", "web_url", "http_url")),
        *(("repository", f) for f in ("git_http_url", "git_ssh_url", "homepage", "url")),
    ),
}


def payload_urls(provider: Provider, payload: Mapping[str, Any]) -> list[str]:
    """The repository URLs a push payload names (none: the payload is not a push we know).

    The generic form is ``{"url": "<the repository's URL or path, as registered>"}``.
    """
    found: list[str] = []
    if provider.name == "generic":
        url = payload.get("url")
        return [url] if isinstance(url, str) and url.strip() else []
    for obj, field in _URL_FIELDS[provider.name]:
        holder = payload.get(obj)
        value = holder.get(field) if isinstance(holder, Mapping) else None
        if isinstance(value, str) and value.strip() and value not in found:
            found.append(value)
    return found


_SCP = re.compile(r"^(?:[^@/]+@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]):(?P<path>.+)$")
"""`git@host:owner/repo.git`, git's scp-like ssh form (a colon before any slash)."""


def canonical(url: str) -> str | None:
    """The form two URLs of one repository share, or None when `url` names nothing.

    Remote URLs: the host (lower case, no port or user) and the path (lower case, no
    trailing slash or `.git`), whatever the scheme: `https://github.com/Acme/App.git`,
    `git@github.com:acme/app` and `ssh://git@github.com:22/acme/app/` are one repository.
    Forges route owner and repository names case-insensitively. Local paths and `file://`
    URLs: the normalised absolute path, case kept.
    """
    text = url.strip()
    if not text:
        return None
    if text.startswith("file://"):
        return _local(text.removeprefix("file://"))
    if text.startswith("/"):
        return _local(text)
    if "://" not in text:
        m = _SCP.match(text)
        if m is None:
            return None
        host, path = m["host"].strip("[]"), m["path"]
    else:
        try:
            parts = urlsplit(text)
            host = parts.hostname or ""
        except ValueError:
            return None
        path = parts.path
    path = path.strip("/").removesuffix(".git").rstrip("/").lower()
    if not host or not path:
        return None
    return f"{host.lower().rstrip('.')}/{path}"


def _local(path: str) -> str | None:
    if not path.startswith("/"):
        return None
    norm = os.path.normpath(path).removesuffix("/.git")
    return "file:" + norm


def delivery_id(provider: Provider, headers: Mapping[str, str]) -> str | None:
    """The delivery's id from its headers (None when the provider sent none)."""
    for name in provider.delivery_headers:
        value = headers.get(name, "").strip()
        if value:
            return value[:200]
    return None


def matching(wanted: list[str], registered: Iterator[tuple[int, str]]) -> list[int]:
    """Ids of the registered (id, url) pairs whose URL is one of `wanted`, canonically."""
    keys = {k for k in map(canonical, wanted) if k is not None}
    return [rid for rid, url in registered if canonical(url) in keys]
