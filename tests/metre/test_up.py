"""`metre up` end to end, as a user runs it: a real process with the embedded PostgreSQL and the
in-process bus, driven through the CLI and the HTTP API, checked against git."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from testkit.oracle import assert_api_matches_git, wait_ingested
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRE_")}
    env.update(
        METRE_DATA_DIR=str(data_dir),
        METRE_POLL_INTERVAL="1",
        METRE_LOG_LEVEL="WARNING",
        METRE_RATE_LIMIT="0",
    )
    return env


def metre(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metre", *args],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@asynccontextmanager
async def metre_up(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Run `metre up --port 0` until the block ends, then stop it with SIGTERM."""
    runtime = data_dir / "api.json"
    runtime.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "metre",
        "up",
        "--port",
        "0",
        env=_env(data_dir),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("metre is up: http://"), line
        url = orjson.loads(runtime.read_bytes())["url"]
        assert url in line
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 60)
            assert code == 0, f"metre up exited with {code}"


async def test_up_ingests_exactly_survives_restart_and_refuses_bad_input(
    tmp_path: Path,
    awkward_repo: Path,
    history_factory: Callable[..., Path],
) -> None:
    data = tmp_path / "data"
    live = GitRepoBuilder(tmp_path / "live")
    live.write("a.txt", b"one\ntwo\n")
    first = live.commit("first", date="2021-06-01T12:00:00+0200")
    big = history_factory(commits=2000, seed=7)

    async with metre_up(data) as api:
        # The CLI registers with the running metre; the API answers for the rest.
        out = metre(data, "add", str(awkward_repo))
        assert out.returncode == 0, out.stderr
        assert "registered repository 1" in out.stdout
        r = await api.post("/api/v1/repos", json={"url": str(big)})
        assert r.status_code == 201, r.text
        big_id = r.json()["id"]
        r = await api.post("/api/v1/repos", json={"url": str(live.path)})
        live_id = r.json()["id"]

        await wait_ingested(api, 1, len(git_commits(awkward_repo)))
        await assert_api_matches_git(api, 1, awkward_repo)
        await wait_ingested(api, big_id, 2000, timeout=300)
        await assert_api_matches_git(api, big_id, big)
        await wait_ingested(api, live_id, 1)
        assert (await api.get(f"/api/v1/repos/{live_id}")).json()["head"] == first

        # Bad input: a clear error, and nothing else changes.
        async def registry() -> list[tuple[int, str, str | None, int]]:
            # State and poll times move on their own (a 1 s poll interval); these must not.
            repos = (await api.get("/api/v1/repos")).json()["repos"]
            return [(r["id"], r["url"], r["branch"], r["commits"]) for r in repos]

        before = await registry()
        for body, reason in [
            ({"url": "https://no-such-host.invalid/x.git"}, "does not resolve"),
            ({"url": str(tmp_path)}, "not a git repository"),
            ({"url": "ext::sh -c touch% /tmp/pwned"}, ""),
            ({"url": str(awkward_repo)}, "already registered"),
            ({"url": str(big), "branch": "../x"}, "branch"),
            ({"nope": 1}, "url"),
        ]:
            r = await api.post("/api/v1/repos", json=body)
            assert r.status_code in (409, 422), (body, r.text)
            assert reason.lower() in r.json()["error"]["message"].lower(), (body, r.text)
        r = await api.post(
            "/api/v1/repos", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        for path in ("/api/v1/repos/999", "/api/v1/repos/1/commits/" + "0" * 40):
            r = await api.get(path)
            assert r.status_code == 404, path
            assert r.json()["error"]["message"]
        r = await api.get("/api/v1/repos/1/metrics/activity", params={"granularity": "year"})
        assert r.status_code == 422
        r = await api.get(
            "/api/v1/repos/1/metrics/activity", params={"from": "2024-02-01", "to": "2024-01-01"}
        )
        assert r.status_code == 422
        assert await registry() == before

        # Every poll (each second, for each repository) shows it `polling` while it runs: on a
        # busy machine all three can be at once, so status is asked again until one is idle.
        for _ in range(20):
            status = metre(data, "status")
            assert status.returncode == 0, status.stderr
            if "idle" in status.stdout:
                break
            await asyncio.sleep(0.5)
        assert "idle" in status.stdout

    # Stopped and started again: the data is still there, and new commits arrive by polling.
    async with metre_up(data) as api:
        assert (await api.get(f"/api/v1/repos/{big_id}")).json()["commits"] == 2000
        await assert_api_matches_git(api, 1, awkward_repo, every_commit=False)
        live.write("a.txt", b"one\n2\nthree\n")
        live.write("b.txt", b"new\n")
        second = live.commit("second", date="2021-06-02T01:00:00-0700")
        loop = asyncio.get_running_loop()
        started = loop.time()
        repo = await wait_ingested(api, live_id, 2, timeout=30)
        assert repo["head"] == second
        assert loop.time() - started < 10  # the poll interval is 1 s
        await assert_api_matches_git(api, live_id, live.path)


async def test_up_killed_mid_ingest_heals_on_restart(
    tmp_path: Path, history_factory: Callable[..., Path]
) -> None:
    """SIGKILL loses the in-process bus and whatever it held; the next start reconciles."""
    data = tmp_path / "data"
    big = history_factory(commits=3000, seed=5)
    runtime = data / "api.json"
    env = {**_env(data), "METRE_BATCH_SIZE": "50"}  # small batches: the kill lands mid-stream
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metre", "up", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 60)
        url = orjson.loads(runtime.read_bytes())["url"]
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            r = await api.post("/api/v1/repos", json={"url": str(big)})
            repo_id = r.json()["id"]
            for _ in range(6000):
                info = (await api.get(f"/api/v1/repos/{repo_id}")).json()
                if info["commits"] >= 100:
                    break
                await asyncio.sleep(0.01)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert 0 < info["commits"] < 3000, f"the kill must land mid-ingest: {info}"

    async with metre_up(data) as api:
        await wait_ingested(api, repo_id, 3000, timeout=300)
        await assert_api_matches_git(api, repo_id, big)
