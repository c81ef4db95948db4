"""Scale-out on the real broker: processors in one consumer group, pollers sharing repositories,
and a lag-driven scaling driver applying KEDA's Kafka rule (I/O: starts a Tansu broker and an
embedded PostgreSQL, and metre role processes).

Run: nice -n 10 python -P bench/scaleout.py [--commits 3000] [--repos 16] [--partitions 8]
     [--only processors,rebalance,pollers,lag]

- processors: the events of REPOS copies of one generated history (COMMITS commits each) are
  published to a topic of PARTITIONS partitions; then 1, 2 and 4 processor processes (the
  real `metre.processors.runner.Processor` over `metre.ingest.kafka_bus.KafkaBus`) apply them in one
  consumer group into a fresh database. events/s is measured between 10% and 90% applied
  (start-up and the last partition's tail excluded).
- rebalance: 2 processors, a third joins mid-run: the longest stretch with no event applied
  by anyone (aiokafka's eager rebalance stops every member). Then one of 3 is SIGKILLed: how
  long its partitions stand still (committed offsets sampled every 0.25 s) until the group
  notices (METRE_CONSUMER_SESSION_TIMEOUT_MS, 10 s by default) and another member takes over.
- pollers: REPOS local clones of a smaller history, polled by 1, 2 and 4 poller processes over
  one registry (the PostgreSQL leases), one processor applying: time until every repository
  is ingested, polls per poller, and events published per commit (1.00 = every repository was
  polled by exactly one poller).
- lag: a backlog on a fresh group and a trickle of new events; every second the driver reads
  the group's lag from the broker, computes KEDA's desired replicas = ceil(lag / THRESHOLD),
  capped by the partitions and by --max-replicas (maxReplicaCount), scales up at once and
  down only after the desired count stayed lower for --cooldown seconds (KEDA's cooldown and
  the HPA's stabilisation window), and starts or stops processor processes.

After every run the store is compared with the git CLI (testkit/oracle.py): per repository the
commits, lines added and removed must equal git's, so lost = 0 and double-counted = 0 are
checked, not assumed. The machine has 2 cores: broker, PostgreSQL, producers and every
processor share them, so more than 2 processors cannot run faster here; the figures show the
protocol (rebalances, takeovers, exact counts) and the per-process rate, not a cluster's
throughput (docs/deploy.md has the capacity model).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from testkit.keda import desired_replicas

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SESSION_TIMEOUT_MS = 10_000
"""As deployed (deploy/k8s/base/config.yaml)."""


def _load() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return out.split("load average:")[-1].strip()


# --- worker processes (the roles, as `metre processor|poller` run them) ----------------------


async def _processor_worker(args: argparse.Namespace) -> None:
    from metre.ingest.kafka_bus import KafkaBus
    from metre.processors.runner import Processor
    from metre.processors.store import PgStore

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = await PgStore.connect(args.dsn, min_size=1, max_size=2)
    bus = KafkaBus(args.bootstrap, args.partitions, session_timeout_ms=SESSION_TIMEOUT_MS)
    await bus.start()
    processor = Processor(bus, store, args.topic, args.group, 2000, args.topic + ".dlq")
    watch = _orphan_watch(stop)

    async def first_batch() -> None:
        while processor.batches == 0:
            await asyncio.sleep(0.02)
        print("first-batch", flush=True)

    first = asyncio.create_task(first_batch())
    print("ready", flush=True)
    try:
        await processor.run(stop)
    finally:
        first.cancel()
        watch.cancel()
        await bus.stop()
        await store.close()
    print(f"applied {processor.applied} duplicates {processor.duplicates}", flush=True)


async def _poller_worker(args: argparse.Namespace) -> None:
    from metre.ingest.kafka_bus import KafkaBus
    from metre.ingest.mirror import FetchAccess
    from metre.ingest.poller import Poller, PollerConfig
    from metre.ingest.urlpolicy import UrlPolicy
    from metre.processors.store import PgStore

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = await PgStore.connect(args.dsn, min_size=1, max_size=2)
    bus = KafkaBus(args.bootstrap, args.partitions, session_timeout_ms=SESSION_TIMEOUT_MS)
    await bus.start()
    access = FetchAccess(policy=UrlPolicy(frozenset(), allow_local_paths=True))
    config = PollerConfig(
        mirrors_dir=Path(args.mirrors), topic=args.topic, poll_interval=3600, access=access,
        workers=1,
    )  # fmt: skip
    poller = Poller(bus, store, config)
    watch = _orphan_watch(stop)
    print("ready", flush=True)
    try:
        await poller.run(stop)
    finally:
        watch.cancel()
        await bus.stop()
        await store.close()
    print(f"polls {poller.polls} published {poller.published}", flush=True)


LIVE: list[Worker] = []
"""Every worker started; whatever is still running when the coordinator stops is killed."""


def _orphan_watch(stop: asyncio.Event) -> asyncio.Task[None]:
    """Stop the role if the coordinator goes away (killed, crashed): no worker outlives it."""
    parent = os.getppid()

    async def watch() -> None:
        while not stop.is_set():
            if os.getppid() != parent:
                stop.set()
            await asyncio.sleep(1.0)

    return asyncio.create_task(watch())


class Worker:
    """One role process of this script; its stdout lines are kept."""

    def __init__(self, kind: str, *args: str) -> None:
        LIVE.append(self)
        self.kind = kind
        command = [sys.executable, "-P", str(Path(__file__).resolve()), f"_{kind}", *args]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
        )
        self.lines: list[tuple[float, str]] = []
        """(time.perf_counter() when read, line) of everything the worker printed."""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.append((time.perf_counter(), line.strip()))

    def at(self, line: str) -> float | None:
        """When the worker printed `line` first (None: not yet)."""
        return next((t for t, s in self.lines if s == line), None)

    def stop(self) -> str:
        """SIGTERM (the role's graceful stop), then its last output line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        return self.lines[-1][1] if self.lines else ""

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


# --- the coordinator --------------------------------------------------------------------------


@dataclasses.dataclass
class Env:
    bootstrap: str
    server_dsn: str
    root: Path
    partitions: int


async def _fresh_database(env: Env, repos: Sequence[str]) -> str:
    """A migrated database with `repos` registered as ids 1..n, in that order."""
    from metre.processors.store import PgStore
    from testkit.postgres import create_database

    dsn = await create_database(env.server_dsn)
    store = await PgStore.connect(dsn, min_size=1, max_size=1)
    try:
        await store.migrate()
        for url in repos:
            await store.add_repo(url, None)
    finally:
        await store.close()
    return dsn


async def _publish(env: Env, topic: str, events: Sequence[tuple[int, bytes]]) -> float:
    """Publish (repo id, event) pairs keyed by repository; returns the seconds it took."""
    from metre.contracts.bus import Message
    from metre.contracts.events import partition_key
    from metre.ingest.kafka_bus import KafkaBus

    bus = KafkaBus(env.bootstrap, env.partitions)
    await bus.start()
    try:
        await bus.ensure_topics([topic, topic + ".dlq"])
        started = time.perf_counter()
        for i in range(0, len(events), 2000):
            chunk = events[i : i + 2000]
            await bus.publish(topic, [Message(partition_key(r), v) for r, v in chunk])
        return time.perf_counter() - started
    finally:
        await bus.stop()


def _events(history: Path, repos: int) -> list[tuple[int, bytes]]:
    """The history's commit events once per repository id 1..repos, repositories interleaved
    so that every partition has work from the start."""
    from dulwich.repo import Repo

    from metre.contracts.events import decode, encode
    from metre.ingest.backfill import encode_events
    from metre.ingest.git.graph import new_commits
    from metre.ingest.mirror import resolve_head

    with Repo(str(history)) as r:
        shas = new_commits(r, resolve_head(history, None), None)
        base = [decode(v) for v in encode_events(r, 1, shas)]
    out = []
    for e in base:
        for repo_id in range(1, repos + 1):
            out.append((repo_id, encode(dataclasses.replace(e, repo_id=repo_id))))
    return out


async def _applied(dsn: str) -> int:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        return int(await con.fetchval("SELECT count(*) FROM commits"))
    finally:
        await con.close()


async def _progress(dsn: str, total: int, timeout: float) -> list[tuple[float, int]]:
    """(time, commits stored) every 0.1 s until `total` are stored or `timeout` passes."""
    import asyncpg

    samples: list[tuple[float, int]] = []
    con = await asyncpg.connect(dsn)
    try:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            n = int(await con.fetchval("SELECT count(*) FROM commits"))
            samples.append((time.perf_counter(), n))
            if n >= total:
                break
            await asyncio.sleep(0.1)
    finally:
        await con.close()
    return samples


def _rate(samples: list[tuple[float, int]], total: int) -> float:
    """Events/s between 10% and 90% of `total` stored."""
    t10 = next(t for t, n in samples if n >= 0.1 * total)
    t90 = next(t for t, n in samples if n >= 0.9 * total)
    n10 = next(n for t, n in samples if n >= 0.1 * total)
    n90 = next(n for t, n in samples if n >= 0.9 * total)
    return (n90 - n10) / max(t90 - t10, 1e-9)


def _longest_stall(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """The longest time without progress in [start, end]."""
    longest, since, last = 0.0, None, None
    for t, n in samples:
        if t < start or t > end:
            continue
        if last is None or n != last:
            if since is not None:
                longest = max(longest, t - since)
            since, last = t, n
    return longest


async def _check(dsn: str, history: Path, repos: int) -> tuple[int, int]:
    """(lost, double-counted) over every repository: commits and lines against the git CLI."""
    from metre.processors.store import PgStore
    from testkit.oracle import expected_activity

    want = {"commits": 0, "added": 0, "removed": 0}
    for day in expected_activity(history).values():
        for k in want:
            want[k] += day[k]
    store = await PgStore.connect(dsn, min_size=1, max_size=1)
    lost = double = 0
    try:
        for repo_id in range(1, repos + 1):
            got = {"commits": 0, "added": 0, "removed": 0}
            for period in await store.activity(repo_id, None, None, "month"):
                for k in got:
                    got[k] += period[k]
            if got == want:
                continue
            lost += max(0, want["commits"] - got["commits"])
            double += max(0, got["commits"] - want["commits"])
            if got["commits"] == want["commits"]:  # same count, other lines: counted wrong
                double += abs(got["added"] - want["added"]) + abs(got["removed"] - want["removed"])
    finally:
        await store.close()
    return lost, double


def _processors(env: Env, dsn: str, topic: str, group: str, n: int) -> list[Worker]:
    common = ["--bootstrap", env.bootstrap, "--dsn", dsn, "--topic", topic, "--group", group]
    return [Worker("processor", *common, "--partitions", str(env.partitions)) for _ in range(n)]


async def bench_processors(env: Env, history: Path, repos: int, counts: Sequence[int]) -> None:
    events = _events(history, repos)
    total = len(events)
    urls = [f"https://example.org/r{i}.git" for i in range(1, repos + 1)]
    print(f"\n## processors: {total:,} events ({repos} repositories x {total // repos:,} "
          f"commits), {env.partitions} partitions; load {_load()}")  # fmt: skip
    print("| processes | events/s (10-90%) | x 1 process | wall to all applied | lost | "
          "double-counted | load after |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    base = None
    for n in counts:
        topic = f"bench.p{n}.{os.getpid()}"
        seconds = await _publish(env, topic, events)
        dsn = await _fresh_database(env, urls)
        workers = _processors(env, dsn, topic, f"g-{topic}", n)
        started = time.perf_counter()
        samples = await _progress(dsn, total, timeout=600)
        wall = time.perf_counter() - started
        for w in workers:
            w.stop()
        rate = _rate(samples, total)
        base = base or rate or 1.0
        lost, double = await _check(dsn, history, repos)
        print(f"| {n} | {rate:,.0f} | {rate / base:.2f} | {wall:.1f} s | {lost} | {double} | "
              f"{_load()} |", flush=True)  # fmt: skip
    print(f"(publishing {total:,} events to the broker took {seconds:.1f} s in the last run)")


async def _committed(env: Env, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (a consumer of the group that never joins
    it: Tansu does not answer the admin client's offset listing)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=env.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        out = {}
        for p in range(env.partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            if offset is not None:
                out[p] = offset
        return out
    finally:
        await consumer.stop()


async def bench_rebalance(env: Env, history: Path, repos: int) -> None:
    events = _events(history, repos)
    total = len(events)
    urls = [f"https://example.org/r{i}.git" for i in range(1, repos + 1)]
    print(f"\n## rebalance: {total:,} events; session timeout {SESSION_TIMEOUT_MS} ms; "
          f"load {_load()}")  # fmt: skip
    # A member joins: every member stops for the rebalance.
    topic = f"bench.join.{os.getpid()}"
    await _publish(env, topic, events)
    dsn = await _fresh_database(env, urls)
    workers = _processors(env, dsn, topic, f"g-{topic}", 2)
    progress = asyncio.create_task(_progress(dsn, total, timeout=600))
    while await _applied(dsn) < 0.2 * total:
        await asyncio.sleep(0.1)
    (joiner,) = _processors(env, dsn, topic, f"g-{topic}", 1)
    workers.append(joiner)
    samples = await progress
    ready, working = joiner.at("ready"), joiner.at("first-batch")
    assert ready is not None
    stall_after = _longest_stall(samples, ready, ready + 15)
    first = next(t for t, n in samples if n > 0)
    stall_before = _longest_stall(samples, first, ready)
    for w in workers:
        w.stop()
    lost, double = await _check(dsn, history, repos)
    took = f"{working - ready:.1f} s" if working is not None else "never (drained before)"
    print(f"- a third processor joins 2: from its bus being up to its first batch applied "
          f"(join, the group's rebalance, first fetch) {took}; the longest stop of the whole "
          f"group after it {stall_after:.1f} s vs {stall_before:.1f} s between batches before; "
          f"lost {lost}, double-counted {double}")  # fmt: skip

    # A member dies: its partitions stand still until the group notices.
    topic = f"bench.kill.{os.getpid()}"
    await _publish(env, topic, events)
    dsn = await _fresh_database(env, urls)
    group = f"g-{topic}"
    workers = _processors(env, dsn, topic, group, 3)
    progress = asyncio.create_task(_progress(dsn, total, timeout=600))
    while await _applied(dsn) < 0.2 * total:
        await asyncio.sleep(0.1)
    history_of: dict[int, list[tuple[float, int]]] = {}
    victim = workers.pop(0)
    before = await _committed(env, group, topic)
    killed = time.perf_counter()
    victim.kill()
    # Until everything is applied, and 5 s more for the last offsets to be committed (Tansu's
    # end offsets are approximate, so "lag 0" is not a reliable end here).
    done_at = None
    while time.perf_counter() < killed + 120:
        now = time.perf_counter()
        for p, o in (await _committed(env, group, topic)).items():
            history_of.setdefault(p, []).append((now, o))
        if progress.done():
            done_at = done_at or now
            if now - done_at > 5:
                break
        await asyncio.sleep(0.25)
    await progress
    # When each partition that still had work moved again after the kill. The victim's stand
    # still until the session times out; the survivors' move within a batch or two.
    resumed: dict[int, float] = {}
    for p, points in history_of.items():
        last_before = before.get(p, -1)
        moved = [t for t, o in points if o > last_before]
        if moved:
            resumed[p] = moved[0] - killed
    if os.environ.get("SCALEOUT_DEBUG"):
        for p, points in sorted(history_of.items()):
            print(p, before.get(p), [(round(t - killed, 1), o) for t, o in points[::8]])
    dead = {p: t for p, t in resumed.items() if t > SESSION_TIMEOUT_MS / 2000}
    alive = {p: t for p, t in resumed.items() if p not in dead}
    for w in workers:
        w.stop()
    lost, double = await _check(dsn, history, repos)
    taken = max(dead.values()) if dead else 0.0
    print(f"- one of 3 processors SIGKILLed: {len(dead)} partitions stood still until taken "
          f"over after {taken:.1f} s; the survivors' {len(alive)} moved on within "
          f"{max(alive.values(), default=0):.1f} s; lost {lost}, double-counted {double}; "
          f"load {_load()}")  # fmt: skip


def _git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


async def bench_pollers(env: Env, history: Path, repos: int, counts: Sequence[int]) -> None:
    from testkit.oracle import expected_activity

    commits = sum(d["commits"] for d in expected_activity(history).values())
    clones = []
    for i in range(1, repos + 1):
        clone = env.root / "clones" / f"r{i}"
        if not clone.exists():
            _git("clone", "-q", "--bare", "--local", str(history), str(clone))
        clones.append(str(clone))
    print(f"\n## pollers: {repos} local repositories x {commits:,} commits, one processor "
          f"applying; load {_load()}")  # fmt: skip
    print("| pollers | wall to all ingested | repositories/s | polls per poller | events "
          "published per commit | lost | double-counted | load after |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    base = None
    for n in counts:
        topic = f"bench.poll{n}.{os.getpid()}"
        dsn = await _fresh_database(env, clones)
        mirrors = env.root / f"mirrors-{n}"
        common = ["--bootstrap", env.bootstrap, "--dsn", dsn, "--topic", topic]
        common += ["--partitions", str(env.partitions)]
        processor = _processors(env, dsn, topic, f"g-{topic}", 1)
        started = time.perf_counter()
        pollers = [Worker("poller", *common, "--mirrors", str(mirrors / str(i))) for i in range(n)]
        await _progress(dsn, commits * repos, timeout=900)
        wall = time.perf_counter() - started
        outcomes = [w.stop() for w in pollers]
        processor[0].stop()
        polls = [int(o.split()[1]) for o in outcomes if o.startswith("polls")]
        published = sum(int(o.split()[3]) for o in outcomes if o.startswith("polls"))
        lost, double = await _check(dsn, history, repos)
        base = base or wall
        print(f"| {n} | {wall:.1f} s | {repos / wall:.2f} | {'/'.join(map(str, polls))} | "
              f"{published / (commits * repos):.2f} | {lost} | {double} | {_load()} |",
              flush=True)  # fmt: skip
        shutil.rmtree(mirrors, ignore_errors=True)


async def _lag(env: Env, group: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    committed = await _committed(env, group, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(env.partitions)]
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    # Tansu reports an end offset as its last batch's base + 1: clamp what it undercounts.
    return sum(max(0, ends[tp] - max(committed.get(tp.partition, 0), 0)) for tp in parts)


async def bench_lag(
    env: Env, history: Path, repos: int, threshold: int, max_replicas: int, cooldown: float
) -> None:
    events = _events(history, repos)
    backlog_repos = repos * 3 // 4
    backlog = [e for e in events if e[0] <= backlog_repos]
    trickle = [e for e in events if e[0] > backlog_repos]
    urls = [f"https://example.org/r{i}.git" for i in range(1, repos + 1)]
    topic = f"bench.lag.{os.getpid()}"
    group = f"g-{topic}"
    await _publish(env, topic, backlog)
    dsn = await _fresh_database(env, urls)
    print(f"\n## lag-driven scaling: backlog {len(backlog):,} events, then a trickle of "
          f"{len(trickle):,} at ~300 events/s; lagThreshold {threshold}, partitions "
          f"{env.partitions}, maxReplicaCount {max_replicas}, scale-down cooldown {cooldown:.0f} s;"
          f" load {_load()}")  # fmt: skip
    print("| t (s) | lag | desired | running |")
    print("|---|---|---|---|")

    async def drip() -> None:
        for i in range(0, len(trickle), 150):
            await _publish(env, topic, trickle[i : i + 150])
            await asyncio.sleep(0.5)

    dripping = asyncio.create_task(drip())
    workers: list[Worker] = []
    started = time.perf_counter()
    lower_since: float | None = None
    settled_at = None
    while time.perf_counter() - started < 300:
        lag = await _lag(env, group, topic) if workers else len(backlog)
        want = desired_replicas(lag, threshold, env.partitions, max_replicas)
        now = time.perf_counter()
        if want > len(workers):
            workers += _processors(env, dsn, topic, group, want - len(workers))
            lower_since = None
        elif want < len(workers):
            lower_since = lower_since or now
            if now - lower_since >= cooldown:
                workers.pop().stop()  # one at a time, like the scale-down policy
                lower_since = now
        else:
            lower_since = None
        print(f"| {now - started:.0f} | {lag:,} | {want} | {len(workers)} |", flush=True)
        if dripping.done() and len(workers) == 1 and lag < threshold:
            settled_at = settled_at or now
            if now - settled_at > 3:
                break
        await asyncio.sleep(1.0)
    await dripping
    await _progress(dsn, len(events), timeout=120)
    for w in workers:
        w.stop()
    lost, double = await _check(dsn, history, repos)
    print(f"lost {lost}, double-counted {double}; load {_load()}")


async def main(args: argparse.Namespace) -> None:
    from metre.pg import start_embedded, stop_embedded
    from testkit.broker import Broker, free_port
    from testkit.histories import generate_history

    root = Path(tempfile.mkdtemp(prefix="metre-scaleout-"))
    broker = Broker(free_port(), root / "broker.log")
    broker.start()
    pgdata = root / "pgdata"
    try:
        server = await asyncio.to_thread(start_embedded, pgdata)
        env = Env(broker.bootstrap, server, root, args.partitions)
        print(f"# scale-out, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
              f"load {_load()}")  # fmt: skip
        only = set(args.only.split(","))
        if only & {"processors", "rebalance", "lag"}:
            history = generate_history(root / "history", commits=args.commits, seed=1)
        if "processors" in only:
            await bench_processors(env, history, args.repos, [1, 2, 4])
        if "rebalance" in only:
            await bench_rebalance(env, history, args.repos)
        if "pollers" in only:
            small = generate_history(root / "small", commits=args.poller_commits, seed=2)
            await bench_pollers(env, small, args.repos, [1, 2, 4])
        if "lag" in only:
            await bench_lag(env, history, args.repos, args.threshold, args.max_replicas,
                            args.cooldown)  # fmt: skip
    finally:
        for worker in LIVE:
            if worker.proc.poll() is None:
                worker.kill()
        await asyncio.to_thread(stop_embedded, pgdata)
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


def cli(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    for name in ("_processor", "_poller"):
        w = sub.add_parser(name)
        w.add_argument("--bootstrap", required=True)
        w.add_argument("--dsn", required=True)
        w.add_argument("--topic", required=True)
        w.add_argument("--partitions", type=int, required=True)
        w.add_argument("--group")
        w.add_argument("--mirrors")
    p.add_argument("--commits", type=int, default=3000)
    p.add_argument("--poller-commits", type=int, default=500)
    p.add_argument("--repos", type=int, default=16)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--threshold", type=int, default=4000)
    p.add_argument("--max-replicas", type=int, default=4)
    p.add_argument("--cooldown", type=float, default=5.0)
    p.add_argument("--only", default="processors,rebalance,pollers,lag")
    args = p.parse_args(argv)
    from metre.runtime import run

    if args.command == "_processor":
        run(_processor_worker(args))
    elif args.command == "_poller":
        run(_poller_worker(args))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main(args))


if __name__ == "__main__":
    cli()
