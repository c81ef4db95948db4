"""The pure side of push webhooks (api/webhooks.py): signatures, payload URLs, canonical URLs."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from metre.api.security import is_open
from metre.api.webhooks import (
    PROVIDERS,
    canonical,
    delivery_id,
    generic_signature,
    matching,
    payload_urls,
    verify,
)

SECRET = "s3cret-for-tests"
BODY = b'{"ref":"refs/heads/main"}'


def _hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_github_signature_is_the_hmac_of_the_raw_body() -> None:
    gh = PROVIDERS["github"]
    good = "sha256=" + _hex(SECRET, BODY)
    assert verify(gh, SECRET, good, "d1", BODY)
    assert not verify(gh, SECRET, good, "d1", BODY + b" ")  # one byte more: another body
    assert not verify(gh, "another-secret", good, "d1", BODY)
    assert not verify(gh, SECRET, _hex(SECRET, BODY), "d1", BODY)  # the prefix is required
    assert not verify(gh, SECRET, "sha1=" + _hex(SECRET, BODY), "d1", BODY)
    assert not verify(gh, SECRET, "", "d1", BODY)


def test_gitea_signature_is_the_bare_hex_hmac() -> None:
    gt = PROVIDERS["gitea"]
    assert verify(gt, SECRET, _hex(SECRET, BODY), "d", BODY)
    assert not verify(gt, SECRET, "sha256=" + _hex(SECRET, BODY), "d", BODY)


def test_gitlab_token_is_the_secret_itself() -> None:
    gl = PROVIDERS["gitlab"]
    assert verify(gl, SECRET, SECRET, "d", BODY)
    assert not verify(gl, SECRET, SECRET[:-1], "d", BODY)
    assert not verify(gl, SECRET, _hex(SECRET, BODY), "d", BODY)


def test_generic_signature_covers_the_delivery_id() -> None:
    gen = PROVIDERS["generic"]
    sig = generic_signature(SECRET, "delivery-1", BODY)
    assert sig == "sha256=" + _hex(SECRET, b"delivery-1." + BODY)
    assert verify(gen, SECRET, sig, "delivery-1", BODY)
    assert not verify(gen, SECRET, sig, "delivery-2", BODY)  # a replay under a new id


def test_delivery_ids_by_provider() -> None:
    assert delivery_id(PROVIDERS["github"], {"x-github-delivery": " abc "}) == "abc"
    assert delivery_id(PROVIDERS["github"], {}) is None
    gl = PROVIDERS["gitlab"]
    assert delivery_id(gl, {"x-gitlab-event-uuid": "u", "idempotency-key": "k"}) == "k"
    assert delivery_id(gl, {"x-gitlab-event-uuid": "u"}) == "u"
    assert delivery_id(PROVIDERS["generic"], {"x-metre-delivery": "x" * 500}) == "x" * 200


def test_payload_urls_by_provider() -> None:
    gh = {
        "repository": {
            "clone_url": "https://github.com/acme/app.git",
            "html_url": "https://github.com/acme/app",
            "ssh_url": "git@github.com:acme/app.git",
        }
    }
    assert payload_urls(PROVIDERS["github"], gh) == [
        "https://github.com/acme/app.git",
        "https://github.com/acme/app",
        "git@github.com:acme/app.git",
    ]
    gl = {
        "project": {"git_http_url": "https://gitlab.com/g/p.git", "git_ssh_url": 5},
        "repository": {"git_ssh_url": "git@gitlab.com:g/p.git"},
    }
    assert payload_urls(PROVIDERS["gitlab"], gl) == [
        "https://gitlab.com/g/p.git",
        "git@gitlab.com:g/p.git",
    ]
    assert payload_urls(PROVIDERS["gitea"], {"repository": "nope"}) == []
    assert payload_urls(PROVIDERS["generic"], {"url": "/srv/x"}) == ["/srv/x"]
    assert payload_urls(PROVIDERS["generic"], {"url": ["/srv/x"]}) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Acme/App.git",
        "https://github.com/acme/app",
        "https://github.com/acme/app/",
        "http://user@GitHub.com:443/acme/app.git",
        "git@github.com:acme/app.git",
        "ssh://git@github.com:22/acme/app",
        "git://github.com/acme/app.git",
    ],
)
def test_canonical_forms_of_one_repository(url: str) -> None:
    assert canonical(url) == "github.com/acme/app"


def test_canonical_tells_repositories_apart() -> None:
    assert canonical("https://github.com/acme/app2") != canonical("https://github.com/acme/app")
    assert canonical("https://gitlab.com/acme/app") != canonical("https://github.com/acme/app")
    assert canonical("https://github.com/acme/app/sub") != canonical("https://github.com/acme/app")
    assert canonical("/srv/Repo") == canonical("file:///srv/Repo") == "file:/srv/Repo"
    assert canonical("/srv/Repo") != canonical("/srv/repo")  # a file system keeps case
    assert canonical("/srv/a/../Repo/") == "file:/srv/Repo"
    for nothing in ("", "   ", "relative/path", "https://", "https://host", "[::1"):
        assert canonical(nothing) is None, nothing


def test_matching_compares_canonically() -> None:
    registered = [(1, "https://github.com/acme/app"), (2, "/srv/x"), (3, "git@github.com:a/b")]
    assert matching(["git@github.com:acme/app.git"], iter(registered)) == [1]
    assert matching(["https://github.com/A/B.git", "file:///srv/x"], iter(registered)) == [2, 3]
    assert matching(["https://github.com/acme/other"], iter(registered)) == []


def test_the_guard_opens_exactly_the_webhook_posts() -> None:
    for provider in PROVIDERS:
        assert is_open(f"/api/v1/hooks/{provider}", "POST")
        assert not is_open(f"/api/v1/hooks/{provider}", "GET")
        assert not is_open(f"/api/v1/hooks/{provider}/x", "POST")
    for path in ("/api/v1/hooks/", "/api/v1/hooks/github/../../repos", "/api/v1/repos"):
        assert not is_open(path, "POST")
