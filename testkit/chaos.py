"""Chaos: metre's distributed roles ingest a generated history while faults are injected, and
the result must equal a fault-free run exactly (I/O: processes, a broker, PostgreSQL, git).

    python -m bench.chaos --commits 5000 --per-kind 1000 [--seed 1]  (bench/chaos.py)

Each kind gets `--per-kind` faults (or `--faults` in all, dealt round-robin); `--mid-share` of
each kind is meant for the backfill, paced by progress and time (0.05-0.3 s apart, the next once
another share of the commits is in or after 1 s more); the rest come after it, each once the one
before healed (or `--heal-wait` s passed) and at least `--interval` s apart. Every fault after
the backfill lands one new commit in git right after it (`broker-restart` while the broker is
down), and its time-to-heal is the time from the fault until PostgreSQL holds that commit and
the API answers for the repository. The kinds (`FAULTS`, one function each):
- kill-poller, kill-processor, kill-api: SIGKILL one process of that role, start it again;
- broker-restart: the Tansu broker is killed, stays down 0.5-3 s, and starts again on the same
  port, empty (the test broker keeps everything in memory);
- broker-loses-data: the broker restarted with its storage wiped (topics, records, groups and
  committed offsets gone) and a commit published right after; nobody runs `metre reconcile`
  and nothing reconciles on a timer (METRE_RECONCILE_INTERVAL is 3,600 s): the roles' data-loss
  watch must find and heal it;
- pg-restart: `pg_ctl restart -m fast` of the PostgreSQL server (every connection is cut);
- duplicates: events of random commits, some twice, published straight to the topic in shuffled
  order (duplicated and reordered delivery);
- join: another processor joins the group mid-stream (a rebalance in the middle of batches;
  with four running, one of the others leaves first);
- sigterm-processor: a processor is stopped with SIGTERM (it finishes its batch, commits, leaves);
- poison: malformed records published to the topic (they must land in the dead-letter table:
  each exactly once, except those a broker restart emptied from the topic before they were read);
- stale-member: another member joins the processors' group, commits positions behind the
  group's (the log's start, or 50-500 records back) and leaves: the records are read again.

Definitions, checked once the pipeline has settled (repository idle, nothing left to apply):
- lost = commits git lists that PostgreSQL lacks + metric/fact rows of the fault-free run that
  are missing or smaller in the chaos run;
- double-counted = commits PostgreSQL holds that git does not list + rows present only in the
  chaos run or larger in it.
The fault-free run is the same code (poller and processor) over the in-process bus into a fresh
database, over the final history (the backfill and the commits the faults landed); every fact
and metric table is compared row by row (testkit/dump.py), and the API is checked
against the git CLI (testkit/oracle.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from dulwich.objects import Blob, Commit, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from metre.contracts.bus import BusError, Message, Record
from metre.contracts.events import encode, partition_key
from metre.ingest.commits import commit_event
from metre.ingest.kafka_bus import KafkaBus
from metre.ingest.mailmap import read_mailmap
from metre.processors.store import PgStore
from testkit.broker import Broker, free_port
from testkit.dump import dump, table_keys
from testkit.gitlog import git_commits
from testkit.pipeline import pipeline
from testkit.postgres import PgServer
from testkit.roles import SESSION_TIMEOUT_MS, Roles, role_env


@dataclass
class ChaosReport:
    commits: int
    faults: Counter[str]
    mid_ingest: int
    """Faults injected before the backfill first reached every commit."""
    meant_mid: int
    """Faults the plan meant for the backfill (those it outlasted landed after it)."""
    last_fault_at: int
    """Commits the API served when the last fault was injected."""
    events_on_topic: int
    """Records the commits topic held, summed over the broker's lifetimes (each restart
    empties it): poller events, reconcile's re-publications, duplicates and poison."""
    injected_events: int
    poison: int
    dead_letters: int
    """Rows in the dead-letter table (the API's count)."""
    poison_lost_in_restarts: int
    """Poison records still unread when a broker restart emptied the topic (so never stored)."""
    poison_unstored: int
    """Poison records published after the last broker restart and not stored: must be 0."""
    stray_dead_letters: int
    """Dead-letter rows that are not one of the poison records, or one stored twice: must be 0."""
    lost_commits: int
    extra_commits: int
    lost_rows: int
    double_rows: int
    table_differences: dict[str, Any]
    settled_in: float
    duration: float
    crashes: list[str]
    sigterm_exits: list[tuple[str, int]]
    heal_times: dict[str, list[float]]
    """Per kind, seconds from each fault after the backfill until the commit that landed right
    after it was stored and the API answered for the repository."""
    unhealed: Counter[str]
    """Faults after the backfill whose commit was not stored within the settle timeout."""
    rewound: int
    """Records the stale members moved committed offsets back over (read again, deduplicated)."""
    stale_failed: int
    reconcile_interval: float
    overlapped: int
    """Faults after the backfill injected while an earlier one was not healed yet (its heal
    wait ran out): their time-to-heal includes the earlier fault's."""

    @property
    def after_backfill(self) -> int:
        return sum(self.faults.values()) - self.mid_ingest

    @property
    def lost(self) -> int:
        return self.lost_commits + self.lost_rows

    @property
    def double_counted(self) -> int:
        return self.extra_commits + self.double_rows

    def _heal_line(self, kind: str) -> str:
        times = self.heal_times.get(kind, [])
        line = f"  {kind:<19} {len(times):>5} timed"
        if times:
            line += f": median {median(times):5.1f} s, max {max(times):5.1f} s"
        if self.unhealed[kind]:
            line += f", {self.unhealed[kind]} not healed"
        return line

    def text(self) -> str:
        kinds = ", ".join(f"{k} {self.faults[k]}" for k in KINDS if self.faults[k])
        return "\n".join(
            [
                f"commits in git:          {self.commits}",
                f"faults injected:         {sum(self.faults.values())} ({kinds})",
                f"  before backfill done:  {self.mid_ingest} of {self.meant_mid} meant for it;"
                f" after it {self.after_backfill} (the last at {self.last_fault_at} commits"
                " served)",
                f"events on the topic:     {self.events_on_topic} (all broker lifetimes)",
                f"  injected duplicates:   {self.injected_events}",
                f"  poison records:        {self.poison} ({self.dead_letters} dead letters"
                f" stored, {self.poison_lost_in_restarts} gone unread with a broker restart,"
                f" {self.poison_unstored} missing, {self.stray_dead_letters} stray)",
                f"lost:                    {self.lost} (commits {self.lost_commits}, rows "
                f"{self.lost_rows})",
                f"double-counted:          {self.double_counted} (commits {self.extra_commits},"
                f" rows {self.double_rows})",
                f"settled after faults in: {self.settled_in:.1f} s; total {self.duration:.1f} s",
                f"time-to-heal, after the backfill ({self.after_backfill} faults; from the fault"
                " to the commit landed after it stored and served):",
                *(
                    self._heal_line(kind)
                    for kind in KINDS
                    if self.heal_times.get(kind) or self.unhealed[kind]
                ),
                f"  injected before the previous one healed: {self.overlapped}",
                f"  stale members:       {self.rewound} records read again"
                f" ({self.stale_failed} members could not commit)",
                f"processes that crashed:  {len(self.crashes)}",
                f"SIGTERM exit codes:      {sorted({c for _, c in self.sigterm_exits})}",
            ]
        )


async def reference_run(repo: Path, dsn: str, data_dir: Path, partitions: int = 4) -> None:
    """The fault-free run: the same poller and processor over the in-process bus."""
    store = await PgStore.connect(dsn)
    try:
        async with pipeline(store, data_dir, partitions=partitions) as ref:
            await ref.ingest(repo, timeout=REFERENCE_TIMEOUT)
    finally:
        await store.close()


REFERENCE_TIMEOUT = 3600.0
"""Seconds the fault-free run may take (a generated history of thousands of commits)."""


def compare(
    got: dict[str, list[dict[str, Any]]], want: dict[str, list[dict[str, Any]]]
) -> tuple[int, int, dict[str, Any]]:
    """(rows lost, rows double-counted, a sample per differing table): by key, a row missing
    or with a smaller value in `got` is lost; a row only in `got` or larger is double-counted."""
    keys = table_keys()
    lost = double = 0
    sample: dict[str, Any] = {}
    for table in sorted(got.keys() | want.keys()):
        key = keys[table]
        g = {tuple(r[k] for k in key): r for r in got.get(table, [])}
        w = {tuple(r[k] for k in key): r for r in want.get(table, [])}
        t_lost = t_double = 0
        t_lost += len(w.keys() - g.keys())
        t_double += len(g.keys() - w.keys())
        for k in g.keys() & w.keys():
            if g[k] == w[k]:
                continue
            bigger = any(
                isinstance(v, int) and isinstance(w[k].get(c), int) and v > w[k][c]
                for c, v in g[k].items()
            )
            if bigger:
                t_double += 1
            else:
                t_lost += 1
        if t_lost or t_double:
            sample[table] = {"lost": t_lost, "double": t_double}
        lost += t_lost
        double += t_double
    return lost, double, sample


async def topic_size(bootstrap: str, topic: str) -> int:
    """Records `topic` holds now (sum of end offsets), 0 when the broker does not answer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        async with asyncio.timeout(10):
            await consumer.start()
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            return sum(ends.values())
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


def _events_of(repo: Path, repo_id: int, shas: list[str]) -> list[bytes]:
    with Repo(str(repo)) as r:
        _, mailmap = read_mailmap(r, git_head(repo))
        return [encode(commit_event(r, repo_id, sha, mailmap)) for sha in shas]


def git_head(repo: Path) -> str:
    return next(iter(git_commits(repo)))


async def _get(api: httpx.AsyncClient, path: str) -> Any:
    """GET with retries: the API (and the database behind it) may be restarting."""
    for _ in range(600):
        with contextlib.suppress(httpx.HTTPError):
            r = await api.get(path)
            if r.status_code == 200:
                return r.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"GET {path} never answered 200")


Fault = Callable[["Chaos"], Awaitable[None]]
FAULTS: dict[str, Fault] = {}
"""The fault kinds, one function each, in the order the report lists them."""


def fault(kind: str) -> Callable[[Fault], Fault]:
    """Register a fault function under `kind`."""

    def register(f: Fault) -> Fault:
        FAULTS[kind] = f
        return f

    return register


@dataclass
class Probe:
    """A fault injected after the backfill, and the commit that landed in git right after it:
    healed once that commit is stored and the API answers for the repository."""

    kind: str
    at: float
    """time.monotonic() when the fault began."""
    sha: str
    healed_in: float | None = None


@dataclass
class Chaos:
    """What the fault functions act on, and what they tally for the report."""

    repo: Path
    repo_id: int
    shas: list[str]
    """The commits of the backfill (duplicates are drawn from them)."""
    roles: Roles
    broker: Broker
    pg: PgServer
    kbus: KafkaBus
    topic: str
    group: str
    port: int
    rng: random.Random
    injected: int = 0
    poison: int = 0
    poison_by_lifetime: list[set[bytes]] = field(default_factory=lambda: [set()])
    """Poison payloads by broker lifetime (each unique, so each dead letter names its record):
    those of an ended lifetime may be gone unread; those of the last one must all be stored."""
    topic_total: int = 0
    extra: int = 3
    rewound: int = 0
    """Records the stale members moved the group's committed offsets back over."""
    stale_failed: int = 0
    """Stale members that could not commit (the group kept rebalancing): not injected."""
    landing: bool = False
    """After the backfill: each fault lands one new commit in git, to time its heal by."""
    probes: list[Probe] = field(default_factory=list)
    current: tuple[str, float] | None = None

    async def land_commit(self) -> None:
        """Once per fault after the backfill: a new commit on main, its heal timed from the
        fault's start (a fault calls this itself to land it at a chosen moment)."""
        if not self.landing or self.current is None:
            return
        kind, at = self.current
        self.current = None
        sha = await asyncio.to_thread(add_commit, self.repo, len(self.probes))
        self.probes.append(Probe(kind, at, sha))

    async def end_lifetime(self) -> None:
        """Before the broker loses its records: count what the topic held."""
        self.topic_total += await topic_size(self.broker.bootstrap, self.topic)
        self.poison_by_lifetime.append(set())


@fault("kill-poller")
async def _kill_poller(c: Chaos) -> None:
    name = c.rng.choice(c.roles.named("poller"))
    c.roles.kill(name)
    c.roles.start(name, "poller")


@fault("kill-processor")
async def _kill_processor(c: Chaos) -> None:
    name = c.rng.choice(c.roles.named("processor"))
    c.roles.kill(name)
    c.roles.start(name, "processor")


@fault("kill-api")
async def _kill_api(c: Chaos) -> None:
    c.roles.kill("api")
    c.roles.start("api", "api", "--port", str(c.port))


@fault("broker-restart")
async def _broker_restart(c: Chaos) -> None:
    """The broker down for 0.5-3 s (a commit lands meanwhile), then back empty."""
    await c.end_lifetime()
    await asyncio.to_thread(c.broker.kill)
    await c.land_commit()
    await asyncio.to_thread(c.broker.restart, down_for=c.rng.uniform(0.5, 3.0))


@fault("broker-loses-data")
async def _broker_loses_data(c: Chaos) -> None:
    """The broker restarted with its storage wiped and a commit published right after, with
    no reconcile by hand and none on a timer: the roles must find the loss and heal it."""
    await c.end_lifetime()
    await asyncio.to_thread(c.broker.wipe)
    await c.land_commit()


@fault("pg-restart")
async def _pg_restart(c: Chaos) -> None:
    await asyncio.to_thread(c.pg.restart)


@fault("duplicates")
async def _duplicates(c: Chaos) -> None:
    """Events of 40 random commits, half of them twice, shuffled, straight to the topic."""
    chosen = c.rng.sample(c.shas, min(40, len(c.shas)))
    chosen += c.rng.sample(chosen, len(chosen) // 2)
    c.rng.shuffle(chosen)
    values = await asyncio.to_thread(_events_of, c.repo, c.repo_id, chosen)
    key = partition_key(c.repo_id)
    await _publish(c.kbus, c.topic, [Message(key, v) for v in values])
    c.injected += len(values)


MAX_PROCESSORS = 4
"""Processors at most: a join with as many running makes one of the others leave first (by
SIGTERM), so that a run of a thousand joins does not end with a thousand processes."""


@fault("join")
async def _join(c: Chaos) -> None:
    running = c.roles.named("processor")
    if len(running) >= MAX_PROCESSORS:
        await asyncio.to_thread(c.roles.terminate, c.rng.choice(running))
    c.roles.start(f"processor-{c.extra}", "processor")
    c.extra += 1


@fault("sigterm-processor")
async def _sigterm_processor(c: Chaos) -> None:
    name = c.rng.choice(c.roles.named("processor"))
    await asyncio.to_thread(c.roles.terminate, name)
    if len(c.roles.named("processor")) < 2:
        c.roles.start(name, "processor")


@fault("poison")
async def _poison(c: Chaos) -> None:
    bad = [
        Message(b"poison", b"not json at all #%d" % c.poison),
        Message(b"poison", orjson.dumps({"v": 1, "type": "commit", "id": 7, "n": c.poison + 1})),
    ]
    await _publish(c.kbus, c.topic, bad)
    c.poison += len(bad)
    c.poison_by_lifetime[-1].update(m.value for m in bad)


@fault("stale-member")
async def _stale_member(c: Chaos) -> None:
    """Another member joins the processors' group and commits stale positions for the
    partitions it is given (half the time the log's start, as from a lost offset snapshot,
    otherwise 50-500 records back, as from an old one), then leaves: whoever gets those
    partitions reads the records again, and the dedup by event id must hold. A member given
    only partitions with nothing committed joins again (eight times at most: the repository's
    records sit in one partition, and a member given another three times running left the CI
    run with nothing rewound)."""
    for attempt in range(10):
        member = c.kbus.consumer([c.topic], c.group)
        try:
            async with asyncio.timeout(30):
                await member.start()
                while not member.assignment():
                    await member.fetch(1, 0.2)
                committed = await member.committed(c.topic)
                if c.rng.random() < 0.5:
                    back = dict(committed)
                else:
                    back = {p: min(o, c.rng.randint(50, 500)) for p, o in committed.items()}
                await member.commit(
                    [Record(c.topic, p, o - back[p] - 1, None, b"") for p, o in committed.items()]
                )
                c.rewound += sum(back.values())
                if sum(back.values()) or attempt >= 7:
                    return
        except (TimeoutError, BusError):  # CommitFailed among them: a rebalance took them
            await asyncio.sleep(0.5)
        finally:
            await member.stop()
    c.stale_failed += 1


KINDS = tuple(FAULTS)

RECONCILE_INTERVAL = 3600
"""METRE_RECONCILE_INTERVAL of the roles (the default): no reconcile on a timer heals a fault."""


def add_commit(repo: Path, i: int) -> str:
    """Commit `chaos.txt` (one line, `i`) on top of main, a minute after its tip; the sha."""
    with Repo(str(repo)) as r:
        ref = Ref(b"refs/heads/main")
        tip = r.refs[ref]
        parent = r[tip]
        assert isinstance(parent, Commit)
        blob = Blob.from_string(b"fault %d\n" % i)
        tree = r[parent.tree]
        assert isinstance(tree, Tree)
        new = Tree()
        for entry in tree.items():
            new.add(entry.path, entry.mode, entry.sha)
        new.add(b"chaos.txt", 0o100644, blob.id)
        commit = Commit()
        commit.tree = new.id
        commit.parents = [tip]
        commit.author = commit.committer = b"Chaos <chaos@example.com>"
        commit.author_time = commit.commit_time = parent.commit_time + 60
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = b"chaos fault %d\n" % i
        for obj in (blob, new, commit):
            r.object_store.add_object(obj)
        assert r.refs.set_if_equals(ref, tip, commit.id)
        return commit.id.decode()


def plan(faults: int, mid_share: float, rng: random.Random) -> tuple[list[str], list[str]]:
    """(meant for the backfill, meant for after it): `faults` dealt round-robin over the
    kinds; of each kind, `mid_share` for the backfill, but at least one after it when the
    kind has two or more (every kind's heal is timed), each part shuffled."""
    per = Counter(KINDS[i % len(KINDS)] for i in range(faults))
    mid: list[str] = []
    after: list[str] = []
    for kind, count in per.items():
        m = min(round(count * mid_share), count - 1) if count > 1 else round(count * mid_share)
        mid += [kind] * m
        after += [kind] * (count - m)
    rng.shuffle(mid)
    rng.shuffle(after)
    return mid, after


async def _watch_heals(c: Chaos, dsn: str, base_url: str, stop: asyncio.Event) -> None:
    """Time every probe, sampling every 0.1 s: healed when PostgreSQL holds its commit and the
    API answers 200 for the repository (so a killed API is back too)."""
    con: asyncpg.Connection | None = None
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as api:
        while not stop.is_set():
            pending = [p for p in c.probes if p.healed_in is None]
            if pending:
                try:
                    if con is None:
                        con = await asyncpg.connect(dsn, timeout=2)
                    rows = await con.fetch(
                        "SELECT sha FROM commits WHERE repo_id = $1 AND sha = ANY($2::text[])",
                        c.repo_id,
                        [p.sha for p in pending],
                    )
                    answered = (await api.get(f"/api/v1/repos/{c.repo_id}")).status_code == 200
                except Exception:  # a restarting PostgreSQL or API fails in many ways
                    if con is not None:
                        with contextlib.suppress(Exception):
                            await con.close()
                    con = None
                    rows, answered = [], False
                now = time.monotonic()
                stored = {row["sha"] for row in rows}
                for p in pending:
                    if answered and p.sha in stored:
                        p.healed_in = now - p.at
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    if con is not None:
        await con.close()


async def _prepare(source: Path, pg: PgServer, work: Path) -> tuple[Path, str, str]:
    """A private clone of `source` (faults add commits: never to a shared history) and two
    migrated databases, the fault-free reference's and the chaos run's."""
    from testkit.postgres import create_database

    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    repo = work / "repo"
    await asyncio.to_thread(
        subprocess.run,
        ["git", "clone", "-q", "--local", str(source), str(repo)],
        check=True,
        capture_output=True,
    )
    ref_dsn = await create_database(pg.dsn)
    chaos_dsn = await create_database(pg.dsn)
    for dsn in (ref_dsn, chaos_dsn):
        store = await PgStore.connect(dsn)
        await store.migrate()
        await store.close()
    return repo, ref_dsn, chaos_dsn


@dataclass
class _Pacer:
    """When the next fault lands: during the backfill by progress and time, after it by time,
    each once the one before healed (or `heal_wait` passed), so each heal is its own."""

    api: httpx.AsyncClient
    path: str
    chaos: Chaos
    commits: int
    meant_mid: int
    rng: random.Random
    interval: float
    heal_wait: float
    settle_timeout: float
    backfilled: bool = False
    overlapped: int = 0
    _mark: int = 0

    def _healing(self) -> bool:
        return any(p.healed_in is None for p in self.chaos.probes)

    async def next(self, i: int) -> dict[str, Any]:
        """Wait until fault `i` is due; the repository's state then."""
        info: dict[str, Any] = await _get(self.api, self.path)
        self.backfilled = self.backfilled or info["commits"] >= self.commits
        if not self.backfilled and i < self.meant_mid:
            # The next one 0.05-0.3 s after the last, once another 1/(2·(m+1)) of the commits
            # is in or after 1 s more (a backfill of a few thousand commits takes seconds:
            # slower pacing missed it).
            gap = self.commits / (2 * (self.meant_mid + 1))
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))
            waited = time.monotonic()
            while info["commits"] < min(self._mark + gap, self.commits):
                if time.monotonic() - waited > 1:
                    break
                await asyncio.sleep(0.1)
                info = await _get(self.api, self.path)
            self._mark = info["commits"]
        else:
            deadline = time.monotonic() + self.settle_timeout
            while info["commits"] < self.commits and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                info = await _get(self.api, self.path)
            await asyncio.sleep(self.interval)
            waited = time.monotonic()
            while self._healing() and time.monotonic() - waited <= self.heal_wait:
                await asyncio.sleep(0.05)
            info = await _get(self.api, self.path)
            self.overlapped += self._healing()
        self.backfilled = self.backfilled or info["commits"] >= self.commits
        return info


def _start_roles(work: Path, dsn: str, broker: Broker, prefix: str) -> tuple[Roles, int]:
    """The API, two pollers and two processors over `broker`; the roles and the API's port."""
    env = role_env(
        work / "data",
        dsn,
        broker.bootstrap,
        METRE_TOPIC_PREFIX=prefix,
        METRE_BATCH_SIZE="20",  # small transactions: a longer backfill for faults to land in
        # The default: nothing reconciles on a timer, so the roles' data-loss watch must heal
        # every broker restart (a poller still reconciles once when it starts).
        METRE_RECONCILE_INTERVAL=str(RECONCILE_INTERVAL),
    )
    roles = Roles(env, work)
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    for i in (1, 2):
        roles.start(f"poller-{i}", "poller")
        roles.start(f"processor-{i}", "processor")
    return roles, port


async def _register(api: httpx.AsyncClient, repo: Path) -> int:
    """Once the API is up, register `repo` (retried while the API or its database starts)."""
    await _get(api, "/readyz")
    for _ in range(100):
        with contextlib.suppress(httpx.HTTPError):
            r = await api.post("/api/v1/repos", json={"url": str(repo)})
            if r.status_code == 201:
                break
        await asyncio.sleep(0.2)
    repo_id: int = r.json()["id"]
    return repo_id


@dataclass
class _Injected:
    """What the faults' loop did: each kind's count, how many landed before the backfill was
    done, and the commits served when the last one landed."""

    done: Counter[str] = field(default_factory=Counter)
    mid_ingest: int = 0
    last_fault_at: int = 0


async def _inject(c: Chaos, pacer: _Pacer, kinds: list[str], started: float, log: Any) -> _Injected:
    """Each fault of `kinds` in order, when the pacer says it is due."""
    injected = _Injected()
    for i, kind in enumerate(kinds):
        info = await pacer.next(i)
        injected.last_fault_at = info["commits"]
        injected.mid_ingest += not pacer.backfilled
        c.landing = pacer.backfilled
        c.current = (kind, time.monotonic())
        log(f"[{time.monotonic() - started:6.1f}s] {kind} (commits {info['commits']})")
        await FAULTS[kind](c)
        await c.land_commit()
        injected.done[kind] += 1
    return injected


async def _until_healed(c: Chaos, deadline: float) -> None:
    """Until every probe healed, or `deadline` (time.monotonic())."""
    while any(p.healed_in is None for p in c.probes) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


@dataclass
class _Settled:
    """The final history and how the pipeline ended over it."""

    commits: list[str]
    settled_in: float
    """Seconds from the last fault until the run settled (or its timeout ran out)."""
    dead_letters: int


async def _settle_over_final_history(
    api: httpx.AsyncClient,
    c: Chaos,
    dsns: tuple[str, str],
    work: Path,
    faults_over: float,
    settle_timeout: float,
    log: Any,
) -> _Settled:
    """The fault-free run over the final history (the faults added commits), then until the
    chaos run equals it, and the API against git."""
    chaos_dsn, ref_dsn = dsns
    commits = list(git_commits(c.repo))
    t = time.monotonic()
    await reference_run(c.repo, ref_dsn, work / "ref")
    log(f"fault-free run of {len(commits)} commits done in {time.monotonic() - t:.1f} s")
    settled = await _settle(
        api, c.repo_id, len(commits), chaos_dsn, ref_dsn, settle_timeout, c.roles
    )
    if settled:  # the last lifetime's poison is read too (its partition has an owner)
        await _dead_letters_stored(chaos_dsn, c.poison_by_lifetime[-1], settle_timeout)
    settled_in = time.monotonic() - faults_over
    log(f"settled: {settled} after {settled_in:.1f} s")
    pipeline = await _get(api, "/api/v1/pipeline?last=5")
    dead = int(pipeline["dead_letters"]["count"])
    from testkit.oracle import assert_api_matches_git

    await assert_api_matches_git(api, c.repo_id, c.repo)
    return _Settled(commits, settled_in, dead)


@dataclass
class _Tables:
    """The chaos run's database against the fault-free run's."""

    dead_letters: Counter[bytes]
    """Stored dead letters by payload."""
    shas_stored: set[str]
    lost_rows: int
    double_rows: int
    sample: dict[str, Any]


async def _compare_databases(chaos_dsn: str, ref_dsn: str) -> _Tables:
    stored = await _dead_letter_payloads(chaos_dsn)
    got, want = await dump(chaos_dsn), await dump(ref_dsn)
    lost_rows, double_rows, sample = compare(got, want)
    return _Tables(stored, {r["sha"] for r in got["commits"]}, lost_rows, double_rows, sample)


def _poison_tally(c: Chaos, stored: Counter[bytes]) -> tuple[int, int, int]:
    """(poison of the last broker lifetime not stored, poison gone unread with a restart,
    stray dead letters: not poison, or a poison record stored twice)."""
    published = set().union(*c.poison_by_lifetime)
    stored_set = set(stored)
    unstored = len(c.poison_by_lifetime[-1] - stored_set)
    lost_in_restarts = len(set().union(*c.poison_by_lifetime[:-1]) - stored_set)
    stray = sum(count - (payload in published) for payload, count in stored.items())
    return unstored, lost_in_restarts, stray


def _heal_tally(probes: list[Probe]) -> tuple[dict[str, list[float]], Counter[str]]:
    """Per kind, the times-to-heal of the probes that healed, and how many did not."""
    heal_times: dict[str, list[float]] = {}
    unhealed: Counter[str] = Counter()
    for p in probes:
        if p.healed_in is None:
            unhealed[p.kind] += 1
        else:
            heal_times.setdefault(p.kind, []).append(p.healed_in)
    return heal_times, unhealed


def _unclean_exits(roles: Roles, codes: dict[str, int]) -> list[str]:
    """The roles that did not exit 0 at the final SIGTERM, each with the end of its log."""
    return [
        f"{name} exited with {code} on SIGTERM; its log ends:\n{_tail(roles.log(name))}"
        for name, code in codes.items()
        if code
    ]


def _report(
    c: Chaos,
    pacer: _Pacer,
    injected: _Injected,
    settled: _Settled,
    tables: _Tables,
    crashes: list[str],
    started: float,
) -> ChaosReport:
    """The run's report (ChaosReport says what each figure means)."""
    poison_unstored, poison_lost_in_restarts, stray = _poison_tally(c, tables.dead_letters)
    heal_times, unhealed = _heal_tally(c.probes)
    commits = set(settled.commits)
    return ChaosReport(
        commits=len(settled.commits),
        faults=injected.done,
        mid_ingest=injected.mid_ingest,
        meant_mid=pacer.meant_mid,
        last_fault_at=injected.last_fault_at,
        events_on_topic=c.topic_total,
        injected_events=c.injected,
        poison=c.poison,
        dead_letters=settled.dead_letters,
        poison_lost_in_restarts=poison_lost_in_restarts,
        poison_unstored=poison_unstored,
        stray_dead_letters=stray,
        lost_commits=len(commits - tables.shas_stored),
        extra_commits=len(tables.shas_stored - commits),
        lost_rows=tables.lost_rows,
        double_rows=tables.double_rows,
        table_differences=tables.sample,
        settled_in=settled.settled_in,
        duration=time.monotonic() - started,
        crashes=crashes,
        sigterm_exits=c.roles.exits,
        heal_times=heal_times,
        unhealed=unhealed,
        rewound=c.rewound,
        stale_failed=c.stale_failed,
        reconcile_interval=RECONCILE_INTERVAL,
        overlapped=pacer.overlapped,
    )


async def run_chaos(
    repo: Path,
    broker: Broker,
    pg: PgServer,
    work: Path,
    *,
    faults: int,
    seed: int = 0,
    mid_share: float = 0.2,
    interval: float = 0.2,
    heal_wait: float = 180.0,
    settle_timeout: float = 300.0,
    log: Any = print,
) -> ChaosReport:
    """Ingest a copy of `repo` with the distributed roles over `broker` and `pg` while
    `faults` faults are injected (`mid_share` of each kind meant for the backfill, paced by
    its progress; the rest after it, each once the one before healed or `heal_wait` s
    passed, at least `interval` s apart, each landing a new commit that times its heal),
    wait until it settles, and compare with a fault-free run of the final history."""
    started = time.monotonic()
    rng = random.Random(seed)
    repo, ref_dsn, chaos_dsn = await _prepare(repo, pg, work)
    backfill = list(git_commits(repo))
    prefix = f"chaos{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.commits"
    roles, port = _start_roles(work, chaos_dsn, broker, prefix)
    mid, after = plan(faults, mid_share, rng)
    kbus = KafkaBus(
        broker.bootstrap,
        partitions=4,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        request_timeout_ms=10_000,
    )
    base_url = f"http://127.0.0.1:{port}"
    stop_watch = asyncio.Event()
    watch: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
            repo_id = await _register(api, repo)
            await kbus.start()
            c = Chaos(
                repo, repo_id, backfill, roles, broker, pg, kbus, topic,
                f"{prefix}-processors", port, rng,
            )  # fmt: skip
            watch = asyncio.create_task(_watch_heals(c, chaos_dsn, base_url, stop_watch))
            pacer = _Pacer(
                api, f"/api/v1/repos/{repo_id}", c, len(backfill), len(mid), rng,
                interval=interval, heal_wait=heal_wait, settle_timeout=settle_timeout,
            )  # fmt: skip
            injected = await _inject(c, pacer, mid + after, started, log)
            faults_over = time.monotonic()
            await _until_healed(c, faults_over + settle_timeout)
            stop_watch.set()
            await watch
            settled = await _settle_over_final_history(
                api, c, (chaos_dsn, ref_dsn), work, faults_over, settle_timeout, log
            )
        c.topic_total += await topic_size(broker.bootstrap, topic)
        tables = await _compare_databases(chaos_dsn, ref_dsn)
        crashes = roles.crashed()
    finally:
        stop_watch.set()
        if watch is not None:
            await asyncio.gather(watch, return_exceptions=True)
        await kbus.stop()
        codes = roles.stop_all()
    crashes += _unclean_exits(roles, codes)
    return _report(c, pacer, injected, settled, tables, crashes, started)


async def _publish(bus: KafkaBus, topic: str, messages: list[Message]) -> None:
    """Publish straight to the topic, retrying while the broker restarts."""
    for attempt in range(50):
        try:
            await bus.publish(topic, messages)
            return
        except Exception:
            if attempt == 49:
                raise
            await asyncio.sleep(0.2)


async def _dead_letter_payloads(dsn: str) -> Counter[bytes]:
    """Stored dead letters, counted by payload (the stored text, back as bytes)."""
    con = await asyncpg.connect(dsn)
    try:
        rows = await con.fetch("SELECT payload FROM dead_letters")
    finally:
        await con.close()
    return Counter(r["payload"].encode() for r in rows)


async def _dead_letters_stored(dsn: str, payloads: set[bytes], timeout: float) -> bool:
    """Wait until every payload in `payloads` is a stored dead letter; False on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if payloads <= set(await _dead_letter_payloads(dsn)):
            return True
        await asyncio.sleep(0.5)
    return False


async def _settle(
    api: httpx.AsyncClient,
    repo_id: int,
    n: int,
    chaos_dsn: str,
    ref_dsn: str,
    timeout: float,
    roles: Roles,
) -> bool:
    """Wait until the API serves every commit and the tables equal the fault-free run's;
    False on timeout (the report then says what differs). The repository's state is not
    waited for: pollers poll it every 2 s, so it is often 'polling' with nothing to do, and
    'failed' is transient here (a poll that met a restarting broker is retried)."""
    want = await dump(ref_dsn)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        info = await _get(api, f"/api/v1/repos/{repo_id}")
        if info["commits"] == n:
            lost, double, _ = compare(await dump(chaos_dsn), want)
            if lost == double == 0:
                return True
        await asyncio.sleep(0.5)
    return False


def _tail(text: str, lines: int = 25) -> str:
    """The end of a role's log, for a report that says why it did not stop."""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])
