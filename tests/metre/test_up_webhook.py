"""A push webhook against `metre up` as a user runs it (a real process: embedded PostgreSQL,
in-process bus, API on a socket), with a poll interval of an hour: only the webhook can make
the new commits arrive, and what is served then equals git."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import sys
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from testkit.oracle import assert_api_matches_git, wait_ingested
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits
from tests.metre.test_up import _env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "a webhook secret for metre up"


async def test_up_polls_on_a_signed_push_webhook(tmp_path: Path) -> None:
    work = GitRepoBuilder(tmp_path / "work")
    work.write("a.txt", b"one\n")
    work.commit("first", date="2025-03-01T08:00:00+01:00")
    origin = tmp_path / "origin.git"
    work.git("clone", "-q", "--bare", str(work.path), str(origin))
    work.git("remote", "add", "origin", str(origin))

    data = tmp_path / "data"
    env = {**_env(data), "METRE_POLL_INTERVAL": "3600", "METRE_API_TOKENS": "tok"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metre", "up", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("metre is up: "), line
        url = orjson.loads((data / "api.json").read_bytes())["url"]
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            r = await api.post(
                "/api/v1/repos",
                json={"url": str(origin), "webhook_secret": SECRET},
                headers={"authorization": "Bearer tok"},
            )
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            await wait_ingested(api, rid, 1, timeout=60)

            work.write("a.txt", b"one\ntwo\n")
            work.write("b.py", b"x = 1\n")
            work.commit("second", date="2025-03-02T09:30:00-04:00")
            work.git("push", "-q", "origin", "HEAD:main")
            body = orjson.dumps({"repository": {"clone_url": str(origin)}})
            sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            r = await api.post(
                "/api/v1/hooks/github",
                content=body,
                headers={
                    "content-type": "application/json",
                    "x-github-event": "push",
                    "x-github-delivery": str(uuid.uuid4()),
                    "x-hub-signature-256": f"sha256={sig}",
                },
            )
            assert r.status_code == 202, r.text
            await wait_ingested(api, rid, len(git_commits(origin)), timeout=60)
            await assert_api_matches_git(api, rid, origin)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0
