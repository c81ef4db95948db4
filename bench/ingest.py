"""Backfill speed against git on one repository, side by side, in the same run.

Run: python -P bench/ingest.py REPO [--stages git,serial,parallel,e2e,processor] [--workers N]
(-P keeps bench/kernels.py from shadowing the kernels package). REPO is a git directory; a
merge-heavy generated one comes from `python -P bench/incremental.py generate DIR`.

Stages, each in its own process so that its peak RSS is its own:
  git        `git log --numstat --no-renames --minimal` of HEAD (the reference)
  serial     metre's walk + commit_event + encode, one process, no bus
  parallel   the same over worker processes (metre.ingest.backfill.EventPool)
  e2e        poller -> InMemoryBus -> Processor -> PgStore on a fresh embedded PostgreSQL,
             until every commit is applied (the mirror is cloned first, not timed)
  processor  Processor alone: pre-encoded events on an InMemoryBus into a fresh database
Before the stages, the events of a sample of commits are compared with git's numstat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # testkit, as bench/heal.py

WAIT = 3600.0
"""Seconds a stage may wait for the processor to apply what was published."""

GIT_ARGS = ["log", "--numstat", "--no-renames", "--minimal", "--format=%x00%H"]


def _peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _anon_mb() -> float:
    """Anonymous RSS now (heap; not the file-backed pages of mapped packs), 0 off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _git_numstat(repo: Path) -> dict[str, list[tuple[str, str, str]]]:
    out = subprocess.run(
        ["git", "-c", "core.quotepath=off", "-C", str(repo), *GIT_ARGS, "HEAD"],
        capture_output=True,
        check=True,
    ).stdout
    result: dict[str, list[tuple[str, str, str]]] = {}
    for block in out.split(b"\x00")[1:]:
        lines = block.decode("utf-8", "replace").split("\n")
        rows = [tuple(line.split("\t", 2)) for line in lines[1:] if line]
        result[lines[0]] = [(a, r, p) for a, r, p in rows]
    return result


def sanity(repo: Path, sample: int) -> str:
    """metre's events equal git's numstat on `sample` random commits (paths without quoting)."""
    from dulwich.repo import Repo

    from metre.ingest.commits import commit_event

    git = _git_numstat(repo)
    shas = random.Random(0).sample(sorted(git), min(sample, len(git)))
    bad = []
    with Repo(str(repo)) as r:
        for sha in shas:
            e = commit_event(r, 1, sha)
            mine = [
                ("-" if f.binary else str(f.added), "-" if f.binary else str(f.removed), f.path)
                for f in e.files
            ]
            if sorted(mine) != sorted(git[sha]):
                bad.append(sha)
    return f"sanity: {len(shas) - len(bad)}/{len(shas)} sampled commits equal git" + (
        f" (differ: {bad[:5]})" if bad else ""
    )


def stage_git(repo: Path, _: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    out = subprocess.run(
        ["git", "-C", str(repo), *GIT_ARGS, "HEAD"], capture_output=True, check=True
    ).stdout
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "commits": out.count(b"\x00"),
        "rss": _peak_mb(resource.RUSAGE_CHILDREN),
    }


def _walk(repo: Any) -> tuple[list[str], float]:
    from metre.ingest.git.graph import new_commits
    from metre.ingest.mirror import resolve_head

    started = time.perf_counter()
    shas = new_commits(repo, resolve_head(Path(repo.path), None), None)
    return shas, time.perf_counter() - started


def stage_serial(repo: Path, _: argparse.Namespace) -> dict[str, Any]:
    from dulwich.repo import Repo

    from metre.ingest.backfill import encode_events

    started = time.perf_counter()
    with Repo(str(repo)) as r:
        shas, walk = _walk(r)
        size = 0
        anon = _anon_mb()
        for i in range(0, len(shas), 500):
            size += sum(map(len, encode_events(r, 1, shas[i : i + 500])))
            anon = max(anon, _anon_mb())
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "walk": walk,
        "commits": len(shas),
        "bytes": size,
        "rss": _peak_mb(),
        "anon_max": anon,
    }


def stage_parallel(repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    from dulwich.repo import Repo

    from metre.ingest.backfill import EventPool, worker_count

    workers = worker_count(args.workers)

    async def run() -> tuple[int, int, float]:
        with Repo(str(repo)) as r:
            shas, walk = _walk(r)
        slices = [shas[i : i + 500] for i in range(0, len(shas), 500)]
        n = size = 0
        with EventPool(workers) as pool:
            async for _, values in pool.events(str(repo), 1, slices):
                n += len(values)
                size += sum(map(len, values))
        return n, size, walk

    started = time.perf_counter()
    n, size, walk = asyncio.run(run())
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "walk": walk,
        "commits": n,
        "bytes": size,
        "workers": workers,
        "rss": _peak_mb(),
        "rss_children": _peak_mb(resource.RUSAGE_CHILDREN),
    }


async def _fresh_store(root: Path) -> Any:
    from metre.pg import start_embedded
    from metre.processors.store import PgStore

    dsn = await asyncio.to_thread(start_embedded, root / "pgdata", database="bench")
    store = await PgStore.connect(dsn, min_size=1, max_size=4)
    await store.migrate()
    return store


def stage_e2e(repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    from metre.contracts.bus import InMemoryBus
    from metre.ingest.mirror import open_mirror
    from metre.ingest.poller import Poller, PollerConfig
    from metre.processors.runner import Processor
    from testkit.pipeline import wait_applied

    async def run(root: Path) -> dict[str, Any]:
        store = await _fresh_store(root)
        try:
            bus = InMemoryBus(partitions=8)
            await bus.start()
            await bus.ensure_topics(["c", "c.dlq"])
            config = PollerConfig(mirrors_dir=root / "mirrors", topic="c", workers=args.workers)
            poller = Poller(bus, store, config)
            processor = Processor(bus, store, "c", "g", args.batch, "c.dlq", fetch_timeout=0.05)
            row = await store.add_repo(str(repo), None)
            cloned = time.perf_counter()
            await asyncio.to_thread(open_mirror, config.mirrors_dir, row.id, str(repo))
            cloned = time.perf_counter() - cloned
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(processor.run(stop))
            await store.request_poll(row.id)
            polled = await store.claim_due_repo(600)
            assert polled is not None
            await poller.poll(polled)
            published = time.perf_counter() - started
            await wait_applied(processor, lambda: poller.published, timeout=WAIT, every=0.01)
            seconds = time.perf_counter() - started
            stop.set()
            await task
            await bus.stop()
            assert processor.poison == 0, "poison events"
            applied = await store.commit_count(row.id)
            return {
                "seconds": seconds,
                "published_at": published,
                "commits": applied,
                "clone": cloned,
                "rss": _peak_mb(),
                "rss_children": _peak_mb(resource.RUSAGE_CHILDREN),
            }
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return asyncio.run(run(Path(tmp)))
        finally:
            from metre.pg import stop_embedded

            stop_embedded(Path(tmp) / "pgdata")


def stage_processor(repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    from dulwich.repo import Repo

    from metre.contracts.bus import InMemoryBus, Message
    from metre.contracts.events import partition_key
    from metre.ingest.backfill import EventPool, worker_count
    from metre.processors.runner import Processor
    from testkit.pipeline import wait_applied

    async def run(root: Path) -> dict[str, Any]:
        store = await _fresh_store(root)
        try:
            row = await store.add_repo(str(repo), None)
            with Repo(str(repo)) as r:
                shas, _ = _walk(r)
            bus = InMemoryBus(partitions=8)
            await bus.start()
            await bus.ensure_topics(["c", "c.dlq"])
            slices = [shas[i : i + 500] for i in range(0, len(shas), 500)]
            with EventPool(worker_count(args.workers)) as pool:
                async for _, values in pool.events(str(repo), row.id, slices):
                    await bus.publish("c", [Message(partition_key(row.id), v) for v in values])
            processor = Processor(bus, store, "c", "g", args.batch, "c.dlq", fetch_timeout=0.05)
            stop = asyncio.Event()
            started = time.perf_counter()
            task = asyncio.create_task(processor.run(stop))
            await wait_applied(processor, len(shas), timeout=WAIT, every=0.01)
            seconds = time.perf_counter() - started
            stop.set()
            await task
            await bus.stop()
            return {"seconds": seconds, "commits": processor.applied, "rss": _peak_mb()}
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return asyncio.run(run(Path(tmp)))
        finally:
            from metre.pg import stop_embedded

            stop_embedded(Path(tmp) / "pgdata")


STAGES = {
    "git": stage_git,
    "serial": stage_serial,
    "parallel": stage_parallel,
    "e2e": stage_e2e,
    "processor": stage_processor,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--workers", type=int, default=None, help="default: CPU count")
    parser.add_argument("--batch", type=int, default=500, help="processor batch size")
    parser.add_argument("--sample", type=int, default=200, help="commits checked against git")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repo = args.repo.resolve()
    if args.stage:
        print(json.dumps(STAGES[args.stage](repo, args)))
        return
    print(f"machine: {_machine()}")
    print(f"repository: {repo}")
    if args.sample:
        print(sanity(repo, args.sample))
    results: dict[str, dict[str, Any]] = {}
    for name in args.stages.split(","):
        cmd = [
            sys.executable,
            "-P",
            __file__,
            str(repo),
            "--stage",
            name,
            "--batch",
            str(args.batch),
        ]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        before = _load()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            print(f"{name}: FAILED\n{out.stderr[-2000:]}")
            continue
        r = results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        ref = results.get("git", {}).get("seconds")
        ratio = f"  ratio to git {r['seconds'] / ref:.2f}" if ref else ""
        extra = {k: v for k, v in r.items() if k not in ("seconds", "commits", "rss")}
        shown = ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items()
        )
        print(
            f"{name:<10} {r['seconds']:7.2f} s  {r['commits'] / r['seconds']:8.0f} commits/s"
            f"{ratio}  peak RSS {r['rss']:.0f} MB  ({shown})"
        )
        print(f"           load before: {before.split('load average:')[-1].strip()}")
    print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
