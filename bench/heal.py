"""Time to heal a broker that lost everything, against the time to apply a push without a loss,
measured in the same run (I/O: role processes, a Tansu broker, the embedded PostgreSQL, git).

    python -P bench/heal.py [--trials 3] [--commits 200]

Each trial: push a commit and time until the API serves git's commit count and head (the
reference); then restart the broker empty (memory storage: topics, records, groups and offsets
gone), push a commit, and time until the API serves git's numbers again, with when the loss
was detected and healed (`/api/v1/pipeline`). Nobody runs `metre reconcile` (its interval is an
hour). Prints the machine, each trial and the ratio heal / reference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from metre.processors.store import PgStore
from testkit.broker import Broker, free_port
from testkit.gitbuilder import GitRepoBuilder, run_git
from testkit.gitlog import git_commits
from testkit.histories import generate_history
from testkit.roles import Roles, role_env, wait_ready


async def _served(api: httpx.AsyncClient, repo_id: int, src: Path, timeout: float = 300) -> float:
    """Seconds until the API serves git's commit count and head for `src`."""
    commits = git_commits(src)
    want = (len(commits), next(iter(commits)))
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        info = (await api.get(f"/api/v1/repos/{repo_id}")).json()
        if (info["commits"], info["head"]) == want:
            return time.monotonic() - began
        await asyncio.sleep(0.05)
    raise RuntimeError(f"not served in {timeout} s")


async def run(trials: int, commits: int) -> None:
    from metre.pg import start_embedded, stop_embedded
    from testkit.postgres import create_database

    root = Path(tempfile.mkdtemp(prefix="metre-heal-"))
    src = root / "src"
    await asyncio.to_thread(generate_history, root / "base", commits=commits, seed=4)
    run_git(root, "clone", "-q", str(root / "base"), str(src))
    pgdata = root / "pg"
    server = await asyncio.to_thread(start_embedded, pgdata)
    broker = Broker(free_port(), root / "broker.log")
    broker.start()
    dsn = await create_database(server)
    store = await PgStore.connect(dsn)
    await store.migrate()
    await store.close()
    roles = Roles(
        role_env(root / "data", dsn, broker.bootstrap, METRE_RECONCILE_INTERVAL="3600"), root
    )
    port = free_port()
    for role in ("api", "poller", "processor"):
        roles.start(role, role, *(("--port", str(port)) if role == "api" else ()))
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, "
          f"load average {load:.1f} at start")  # fmt: skip
    refs, heals = [], []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            await wait_ready(api, roles, timeout=60)
            repo_id = (await api.post("/api/v1/repos", json={"url": str(src)})).json()["id"]
            await _served(api, repo_id, src)
            b = GitRepoBuilder(src)
            for trial in range(trials):
                b.write(f"ref-{trial}.txt", b"a\n")
                b.commit(f"reference {trial}")
                refs.append(await _served(api, repo_id, src))
                await asyncio.sleep(3)  # the watch records its marks
                lost_at = datetime.now().astimezone()
                await asyncio.to_thread(broker.restart)
                b.write(f"heal-{trial}.txt", b"b\n")
                b.commit(f"after the loss {trial}")
                heals.append(await _served(api, repo_id, src))
                last = (await api.get("/api/v1/pipeline")).json()["data_loss"]["last"] or {}
                detected = datetime.fromisoformat(last["detected_at"]) - lost_at
                healed = datetime.fromisoformat(last["healed_at"]) - lost_at if last.get(
                    "healed_at") else None  # fmt: skip
                print(f"trial {trial}: reference {refs[-1]:.1f} s; loss ({last.get('kind')}) "
                      f"detected {detected.total_seconds():.1f} s, healed "
                      f"{healed.total_seconds() if healed else float('nan'):.1f} s, "
                      f"served again {heals[-1]:.1f} s after the restart")  # fmt: skip
    finally:
        roles.stop_all()
        broker.stop()
        await asyncio.to_thread(stop_embedded, pgdata)
    ref, heal = sorted(refs)[len(refs) // 2], sorted(heals)[len(heals) // 2]
    print(f"median: reference {ref:.1f} s, heal {heal:.1f} s, ratio {heal / ref:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--commits", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.trials, args.commits))


if __name__ == "__main__":
    main()
