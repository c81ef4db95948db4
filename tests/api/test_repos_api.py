"""Repository endpoints and probes over the real app and PostgreSQL: the registry's rules as the
distributed API applies them (local paths only when allowed)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from metre.api.app import create_app
from metre.processors.store import PgStore
from metre.settings import Settings

pytestmark = pytest.mark.integration


def _client(settings: Settings, store: PgStore) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, store))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


async def test_distributed_api_refuses_local_paths_unless_allowed(
    tmp_path: Path, store: PgStore, awkward_repo: Path
) -> None:
    closed = Settings(data_dir=tmp_path, allow_local_paths=False, rate_limit=0)
    async with _client(closed, store) as api:
        for url in (str(awkward_repo), awkward_repo.as_uri()):
            r = await api.post("/api/v1/repos", json={"url": url})
            assert r.status_code == 422, r.text
            assert "local" in r.json()["error"]["message"].lower()
        assert (await api.get("/api/v1/repos")).json()["repos"] == []

    opened = Settings(data_dir=tmp_path, allow_local_paths=True, rate_limit=0)
    async with _client(opened, store) as api:
        r = await api.post("/api/v1/repos", json={"url": str(awkward_repo)})
        assert r.status_code == 201, r.text
        repo = r.json()
        assert (repo["url"], repo["branch"], repo["state"]) == (str(awkward_repo), None, "pending")
        assert (repo["commits"], repo["head"]) == (0, None)
        got = await api.get(f"/api/v1/repos/{repo['id']}")
        assert got.json()["id"] == repo["id"]
        r = await api.post(f"/api/v1/repos/{repo['id']}/poll")
        assert r.status_code == 202
        assert r.json()["id"] == repo["id"]
        assert (await api.post("/api/v1/repos/4242/poll")).status_code == 404


async def test_probes_and_openapi(tmp_path: Path, store: PgStore) -> None:
    async with _client(Settings(data_dir=tmp_path, rate_limit=0), store) as api:
        assert (await api.get("/healthz")).json() == {"status": "ok"}
        ready = await api.get("/readyz")
        assert ready.status_code == 200, ready.text
        schema = (await api.get("/openapi.json")).json()
        for path in (
            "/api/v1/repos",
            "/api/v1/repos/{repo_id}",
            "/api/v1/repos/{repo_id}/poll",
            "/api/v1/repos/{repo_id}/commits/{sha}",
            "/api/v1/repos/{repo_id}/metrics/activity",
            "/api/v1/repos/{repo_id}/metrics/authors",
        ):
            assert path in schema["paths"], path
        assert (await api.get("/docs")).status_code == 200


async def test_readyz_says_so_when_the_database_is_gone(tmp_path: Path, store: PgStore) -> None:
    async with _client(Settings(data_dir=tmp_path, rate_limit=0), store) as api:
        await store.close()
        r = await api.get("/readyz")
        assert r.status_code == 503
        assert r.json()["error"]["message"]
