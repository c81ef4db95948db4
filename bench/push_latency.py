"""Push-to-served latency in embedded mode: a push webhook call -> the new commit's metrics
served by the API.

Run: python -P bench/push_latency.py [--pushes 60] [--history 200]

Starts `metre up` as a user runs it (a subprocess: embedded PostgreSQL, in-process bus, API
on a free port) with a poll interval of an hour, so only the webhook makes it poll. A bare
`origin.git` (a generated history of `--history` commits) is registered with a webhook
secret. Then, per push: a work clone commits one change and `git push`es it (not timed);
the clock starts; a signed GitHub push webhook is sent; the API is asked for the repository
every 5 ms until it serves the new commit count (its metrics: the count is summed from the
activity table the processor writes in the batch's transaction). Phases per push, from the
client's side:

  ack      the webhook's 202 (signature checked, delivery recorded, poll requested)
  polled   the repository's head is the new commit (fetched, events published, head stored)
  served   the commit count includes the new commit (the processor applied the batch)

Reference, measured in the same run for each push: `git fetch` of the same commit into a
bare mirror (what any poll must at least do). Prints p50 and p99 of each phase, the ratio of
the served p50 to the reference's, the machine and the load average before and after. Every
push's metrics are checked at the end against `git rev-list --count`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson

SECRET = "bench-webhook-secret"


def _git(cwd: Path, *args: str) -> str:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.org",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.org",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd.parent),
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(xs: list[float], p: float) -> float:
    """Nearest rank."""
    s = sorted(xs)
    k = max(1, -(-len(s) * p // 100))
    return s[int(k) - 1]


def prepare(root: Path, history: int) -> tuple[Path, Path, Path]:
    """(work clone, origin.git, reference mirror) with `history` commits."""
    work = root / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main", ".")
    for i in range(history):
        (work / f"f{i % 50}.txt").write_text(f"line {i}\n" * (1 + i % 7))
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", f"history {i}")
    origin = root / "origin.git"
    _git(root, "clone", "-q", "--bare", str(work), str(origin))
    _git(work, "remote", "add", "origin", str(origin))
    mirror = root / "reference.git"
    _git(root, "clone", "-q", "--mirror", str(origin), str(mirror))
    return work, origin, mirror


async def start_metre(data_dir: Path) -> tuple[asyncio.subprocess.Process, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRE_")}
    env.update(
        METRE_DATA_DIR=str(data_dir),
        METRE_POLL_INTERVAL="3600",
        METRE_LOG_LEVEL="WARNING",
        METRE_RATE_LIMIT="0",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "metre", "up", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
    if not line.startswith("metre is up: "):
        raise SystemExit(f"metre up did not start: {line!r}")
    return proc, orjson.loads((data_dir / "api.json").read_bytes())["url"]


def webhook(origin: Path) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps({"ref": "refs/heads/main", "repository": {"clone_url": str(origin)}})
    return body, {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }


async def wait_for(
    client: httpx.AsyncClient, rid: int, commits: int, head: str
) -> tuple[float, float]:
    """(seconds until the head is shown, until the commit count is), from now."""
    t0 = time.perf_counter()
    polled = None
    while True:
        repo = (await client.get(f"/api/v1/repos/{rid}")).json()
        now = time.perf_counter() - t0
        if polled is None and repo["head"] == head:
            polled = now
        if repo["commits"] == commits:
            return (polled if polled is not None else now), now
        if repo["state"] == "failed":
            raise SystemExit(f"the repository failed: {repo['error']}")
        await asyncio.sleep(0.005)


async def run(pushes: int, history: int) -> None:
    print(f"machine: {machine()}")
    print(f"load average before: {load()}")
    with tempfile.TemporaryDirectory(prefix="metre-push-latency-") as tmp:
        root = Path(tmp)
        work, origin, mirror = prepare(root, history)
        proc, url = await start_metre(root / "data")
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                r = await client.post(
                    "/api/v1/repos", json={"url": str(origin), "webhook_secret": SECRET}
                )
                r.raise_for_status()
                rid = r.json()["id"]
                await wait_for(client, rid, history, _git(origin, "rev-parse", "HEAD"))
                ack, polled, served, ref = [], [], [], []
                for i in range(pushes):
                    (work / f"push{i % 10}.txt").write_text(f"push {i}\n" * (i % 5 + 1))
                    _git(work, "add", "-A")
                    _git(work, "commit", "-q", "-m", f"push {i}")
                    _git(work, "push", "-q", "origin", "HEAD:main")
                    sha = _git(work, "rev-parse", "HEAD")
                    body, headers = webhook(origin)
                    t0 = time.perf_counter()
                    r = await client.post("/api/v1/hooks/github", content=body, headers=headers)
                    t_ack = time.perf_counter() - t0
                    if r.status_code != 202:
                        raise SystemExit(f"webhook refused: {r.status_code} {r.text}")
                    p, s = await wait_for(client, rid, history + i + 1, sha)
                    ack.append(t_ack)
                    polled.append(t_ack + p)
                    served.append(t_ack + s)
                    t1 = time.perf_counter()
                    _git(mirror, "fetch", "-q", "origin")
                    ref.append(time.perf_counter() - t1)
                total = int(_git(origin, "rev-list", "--count", "HEAD"))
                r = await client.get(
                    f"/api/v1/repos/{rid}/metrics/activity", params={"granularity": "month"}
                )
                got = sum(p["commits"] for p in r.json()["series"])
                assert got == total, (got, total)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    print(f"load average after: {load()}")
    print(f"{pushes} pushes of one commit onto a {history}-commit history, local path")
    print(f"{'phase':<10} {'p50 s':>8} {'p99 s':>8} {'mean s':>8} {'max s':>8}")
    for name, xs in (("ack", ack), ("polled", polled), ("served", served), ("git fetch", ref)):
        print(
            f"{name:<10} {pct(xs, 50):8.3f} {pct(xs, 99):8.3f} "
            f"{statistics.fmean(xs):8.3f} {max(xs):8.3f}"
        )
    ratio = pct(served, 50) / pct(ref, 50)
    print(f"served p50 / git fetch p50: {ratio:.1f}x")
    ok = pct(served, 50) <= 1.0 and pct(served, 99) <= 3.0
    print(f"target p50 <= 1 s, p99 <= 3 s: {'reached' if ok else 'NOT reached'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pushes", type=int, default=60)
    ap.add_argument("--history", type=int, default=200)
    args = ap.parse_args()
    if args.pushes < 1:
        raise SystemExit("--pushes must be at least 1")
    asyncio.run(run(args.pushes, args.history))


if __name__ == "__main__":
    main()
