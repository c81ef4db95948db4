"""The API for operators: /docs and /redoc from local assets only (checked in a real headless
Chromium too: every request it makes stays on the server), the bearer scheme and the 401/429
answers in the OpenAPI document, examples on the main responses, /metrics with route
templates, and /readyz's named states."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from metre.api.app import create_app
from metre.api.openapi import patch_document
from metre.processors.store import PgStore
from metre.readiness import Check
from metre.settings import Settings
from testkit.pipeline import Pipeline
from tests.api.test_dashboard import browser, open_page, serve  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metre")  # type: ignore[arg-type]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_doc_pages_reference_only_local_assets(page: str) -> None:
    async with _client(create_app(Settings(), None)) as c:
        r = await c.get(page)
        assert r.status_code == 200
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert "://" not in r.text, "an absolute URL in the page"
        urls = [a or b for a, b in _URL.findall(r.text)]
        assert urls, r.text
        for url in urls:
            assert url.startswith("/"), url
            asset = await c.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 500, url


async def test_doc_pages_render_offline_in_chromium(
    metre_api: Pipeline,
    browser: Browser,  # noqa: F811 (fixture)
) -> None:
    async with serve(Settings(), metre_api) as url:
        for page_path, ready in (
            ("/docs", ".swagger-ui .information-container .title"),
            ("/redoc", "h1:has-text('metre')"),
        ):
            problems: list[str] = []
            requested: list[str] = []
            page = await open_page(browser, url + page_path, problems, requested)
            await page.locator(ready).first.wait_for(timeout=20_000)
            assert "metre" in (await page.locator(ready).first.inner_text())
            local = (url, "data:", f"blob:{url}")
            outside = [u for u in requested if not u.startswith(local)]
            assert outside == [], outside
            assert [p for p in problems if "favicon" not in p] == [], problems
            await page.close()


def _doc(**settings: Any) -> dict[str, Any]:
    app = create_app(Settings(**settings), None)
    return app.openapi()


def test_openapi_has_the_bearer_scheme_and_the_guard_answers() -> None:
    doc = _doc(api_tokens="t")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    paths = doc["paths"]
    post = paths["/api/v1/repos"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert {"401", "429"} <= set(post["responses"])
    assert "WWW-Authenticate" in post["responses"]["401"]["headers"]
    assert "Retry-After" in post["responses"]["429"]["headers"]
    delete = paths["/api/v1/repos/{repo_id}"]["delete"]
    assert "401" in delete["responses"]
    read = paths["/api/v1/repos/{repo_id}"]["get"]
    assert "401" not in read["responses"]  # reads are open unless told otherwise
    assert {} in read["security"]
    assert "429" in read["responses"]
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in paths[probe]["get"], probe
        assert "401" not in paths[probe]["get"]["responses"], probe
    # The guard never answers 403; only push webhooks do (a bad signature, by their route).
    assert all(
        "403" not in str(ops)
        for path, ops in paths.items()
        if not path.startswith("/api/v1/hooks/")
    )


def test_reads_need_the_token_in_the_document_when_they_do_in_the_server() -> None:
    paths = _doc(api_tokens="t", read_requires_token=True)["paths"]
    read = paths["/api/v1/repos/{repo_id}/metrics/activity"]["get"]
    assert read["security"] == [{"bearer": []}]
    assert "401" in read["responses"]
    unlimited = _doc(rate_limit=0)["paths"]
    assert "429" not in unlimited["/api/v1/repos"]["get"]["responses"]


def test_an_open_server_documents_no_401() -> None:
    paths = _doc()["paths"]
    post = paths["/api/v1/repos"]["post"]
    assert "401" not in post["responses"]
    assert {} in post["security"]  # a token is accepted, not needed
    assert not [p for p, item in paths.items() for op in item.values() if "401" in op["responses"]]


def test_main_responses_carry_examples() -> None:
    paths = _doc()["paths"]
    repo = paths["/api/v1/repos/{repo_id}"]["get"]["responses"]["200"]["content"]
    example = repo["application/json"]["example"]
    assert example["state"] == "idle"
    assert set(example) >= {"id", "url", "head", "commits", "progress"}
    activity = paths["/api/v1/repos/{repo_id}/metrics/activity"]["get"]["responses"]["200"]
    assert activity["content"]["application/json"]["example"]["series"]


def test_patch_document_is_idempotent() -> None:
    doc = _doc()
    before = str(doc)
    patch_document(doc, tokens=False, read_requires_token=False, rate_limited=True)
    assert str(doc) == before


async def test_metrics_count_requests_by_route_template(store: PgStore) -> None:
    repo = await store.add_repo("https://example.org/r.git", None)
    settings = Settings(api_tokens=SecretStr("tok"), read_requires_token=True)
    async with _client(create_app(settings, store)) as c:
        auth = {"Authorization": "Bearer tok"}
        assert (await c.get(f"/api/v1/repos/{repo.id}", headers=auth)).status_code == 200
        assert (await c.get("/api/v1/repos/999999", headers=auth)).status_code == 404
        assert (await c.get(f"/api/v1/repos/{repo.id}")).status_code == 401
        assert (await c.get("/no/such/path", headers=auth)).status_code == 404
        r = await c.get("/metrics")  # open like the probes, even when reads need a token
        assert r.status_code == 200
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == "metre_http_requests_total":
                key = (s.labels["method"], s.labels["route"], s.labels["status"])
                found[key] = s.value
            if s.name == "metre_repositories" and s.labels["state"] == "pending":
                pending = s.value
    route = "/api/v1/repos/{repo_id}"
    assert found[("GET", route, "200")] >= 1
    assert found[("GET", route, "404")] >= 1
    assert found[("GET", route, "401")] >= 1  # refused by the guard, before routing
    assert found[("GET", "unmatched", "404")] >= 1
    assert not [k for k in found if re.search(r"/repos/\d", k[1])]  # templates, not paths
    assert pending >= 1


async def test_readyz_degraded_is_200_and_named(store: PgStore) -> None:
    async def bus() -> Check:
        return Check("down", "broker at kafka:9092: KafkaConnectionError")

    app = create_app(Settings(), store, readiness={"bus": bus})
    async with _client(app) as c:
        r = await c.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "degraded",
        "checks": {"database": "up", "bus": "down"},
        "details": {"bus": "broker at kafka:9092: KafkaConnectionError"},
        "degraded": ["bus"],
    }
    required = create_app(Settings(), store, readiness={"bus": bus}, required=("database", "bus"))
    async with _client(required) as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["error"]["message"] == "bus unreachable"


def test_vendored_assets_carry_their_licences() -> None:
    vendor = Path(__file__).parents[2] / "api" / "static" / "vendor"
    for name in ("swagger-ui", "redoc"):
        assert (vendor / name / "LICENSE").stat().st_size > 500
        assert "npm:" in (vendor / name / "VERSION").read_text()
