"""Registration decides identity and policy once: one repository per canonical location, and
refusals that name the setting (over the real app and PostgreSQL)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from metre.api.app import create_app
from metre.processors.store import PgStore
from metre.settings import Settings
from tests.fixtures.gitrepo import GitRepoBuilder

pytestmark = pytest.mark.integration


def _client(settings: Settings, store: PgStore) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings, store))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@pytest.fixture
def work_tree(tmp_path: Path) -> Path:
    b = GitRepoBuilder(tmp_path / "w")
    b.write("a.txt", b"a\n")
    b.commit("one", date="2021-01-01T00:00:00+0000")
    return b.path.resolve()


async def test_one_local_repository_is_registered_once(
    tmp_path: Path, store: PgStore, work_tree: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(work_tree)
    canonical = str(work_tree)  # the fixture gives it resolved
    settings = Settings(data_dir=tmp_path / "d", allow_local_paths=True, rate_limit=0)
    async with _client(settings, store) as api:
        first = await api.post("/api/v1/repos", json={"url": f"{work_tree}/"})
        assert first.status_code == 201, first.text
        assert first.json()["url"] == canonical
        for spelling in (
            str(work_tree),
            "/" + str(work_tree),  # //path
            f"{work_tree}/.git",
            f"{work_tree}/.git/",
            f"{work_tree}/./",
            str(link),
            (work_tree / ".git").as_uri(),
        ):
            again = await api.post("/api/v1/repos", json={"url": spelling})
            assert again.status_code == 409, (spelling, again.text)
            assert canonical in again.json()["error"]["message"]
        listing = (await api.get("/api/v1/repos")).json()["repos"]
    assert [r["url"] for r in listing] == [canonical]


async def test_proc_paths_are_refused(tmp_path: Path, store: PgStore, work_tree: Path) -> None:
    sneaky = tmp_path / "cwd"
    sneaky.symlink_to("/proc/self/cwd")
    settings = Settings(data_dir=tmp_path / "d", allow_local_paths=True, rate_limit=0)
    async with _client(settings, store) as api:
        for url in ("/proc/self/cwd", f"/proc/{os.getpid()}/root{work_tree}", str(sneaky)):
            r = await api.post("/api/v1/repos", json={"url": url})
            assert r.status_code == 422, (url, r.text)
            assert "/proc" in r.json()["error"]["message"]
        assert (await api.get("/api/v1/repos")).json()["repos"] == []


async def test_one_remote_is_registered_once(tmp_path: Path, store: PgStore) -> None:
    """Spellings of one https remote (an IP literal: nothing is resolved) are one repository."""
    settings = Settings(data_dir=tmp_path / "d", rate_limit=0)
    async with _client(settings, store) as api:
        first = await api.post("/api/v1/repos", json={"url": "https://93.184.215.14/team/r/"})
        assert first.status_code == 201, first.text
        assert first.json()["url"] == "https://93.184.215.14/team/r"
        for spelling in ("https://93.184.215.14:443/team/r", "https://93.184.215.14/team/r//"):
            again = await api.post("/api/v1/repos", json={"url": spelling})
            assert again.status_code == 409, again.text


async def test_refusals_name_the_setting(tmp_path: Path, store: PgStore, work_tree: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", allow_local_paths=False, rate_limit=0)
    async with _client(settings, store) as api:
        cases = {
            str(work_tree): "METRE_ALLOW_LOCAL_PATHS",
            work_tree.as_uri(): "METRE_ALLOW_LOCAL_PATHS",
            "git://93.184.215.14/r": "METRE_ALLOWED_SCHEMES",
            "https://[64:ff9b::10.0.0.1]/r": "METRE_ALLOW_PRIVATE_HOSTS",
            "https://[64:ff9b:1::a00:1]/r": "METRE_ALLOW_PRIVATE_HOSTS",
            "https://[::ffff:0:127.0.0.1]/r": "METRE_ALLOW_PRIVATE_HOSTS",
            "javascript:alert(1)": "unsupported URL scheme 'javascript'",
        }
        for url, named in cases.items():
            r = await api.post("/api/v1/repos", json={"url": url})
            assert r.status_code == 422, (url, r.text)
            assert named in r.json()["error"]["message"], (url, r.text)
        assert (await api.get("/api/v1/repos")).json()["repos"] == []
