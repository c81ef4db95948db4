"""Processor speed: events/s that the sink (`Sink.apply_changes`) writes into PostgreSQL, and
where the time of one batch goes (I/O: a fresh embedded PostgreSQL per run, events from a real
history).

Run: python -P bench/processor.py REPO [--batch N] [--phases] [--limit N]

The events of REPO's history (a git directory) are built once and cached as encoded bytes in
the temporary directory (`--cache`); each run then starts a fresh database and applies them in
batches of `--batch` (default: the processor's own, `METRE_BATCH_SIZE`), decode included, the
way the processor receives them. It prints the CPU time of the client (this process: decoding,
staging, the protocol) and of the PostgreSQL backend that served it, each per event and as a
share of the two. The reference, in the same run and database: decoding the same events and
copying their staged facts (sink `stage`) with binary COPY into unlogged tables without keys or
indexes, the floor of getting the batch's bytes into PostgreSQL at all. `--phases` also times
each statement of `apply` (server time as seen by the client; statements the sink sends in one
round trip are sent one by one) and the Python work between them, summed over the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _load() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return out.split("load average:")[-1].strip()


def events_of(repo: Path, cache: Path) -> list[bytes]:
    """The encoded commit events of REPO's head history (repo id 1), built once."""
    if cache.exists():
        with cache.open("rb") as f:
            values: list[bytes] = pickle.load(f)
        return values
    from dulwich.repo import Repo

    from metre.ingest.backfill import encode_events
    from metre.ingest.git.graph import new_commits
    from metre.ingest.mirror import resolve_head

    with Repo(str(repo)) as r:
        shas = new_commits(r, resolve_head(repo, None), None)
        values = []
        for i in range(0, len(shas), 500):
            values += encode_events(r, 1, shas[i : i + 500])
    with cache.open("wb") as f:
        pickle.dump(values, f)
    return values


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (0.0 where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Timed:
    """A connection proxy that adds each statement's wall time to `spent[label]`."""

    def __init__(self, con: Any, spent: dict[str, float], labels: dict[str, str]) -> None:
        self._con = con
        self._spent = spent
        self._labels = labels

    def _label(self, sql: str) -> str:
        for needle, label in self._labels.items():
            if needle in sql:
                return label
        return sql.split("\n")[0][:40]

    async def execute(self, sql: str, *args: Any) -> Any:
        if not args and ";\n" in sql:  # statements the sink sends in one round trip
            for one in sql.split(";\n"):
                if one.strip():
                    await self.execute(one)
            return None
        t = time.perf_counter()
        try:
            return await self._con.execute(sql, *args)
        finally:
            self._spent[self._label(sql)] += time.perf_counter() - t

    async def fetch(self, sql: str, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return await self._con.fetch(sql, *args)
        finally:
            self._spent[self._label(sql)] += time.perf_counter() - t

    async def copy_records_to_table(self, table: str, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return await self._con.copy_records_to_table(table, **kwargs)
        finally:
            self._spent[f"copy {table}"] += time.perf_counter() - t

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


async def run(values: list[bytes], batch: int, phases: bool, root: Path) -> dict[str, Any]:
    from metre.contracts.events import decode_event
    from metre.pg import start_embedded
    from metre.processors.metrics import TABLES
    from metre.processors.store import PgStore

    dsn = await asyncio.to_thread(start_embedded, root / "pgdata", database="bench")
    store = await PgStore.connect(dsn, min_size=1, max_size=1)
    try:
        await store.migrate()
        await store.add_repo("bench", None)
        spent: dict[str, float] = defaultdict(float)
        if phases:
            labels = {f"INSERT INTO {name} AS m": f"upsert {name}" for name in TABLES}
            labels |= {
                "INSERT INTO commits": "insert commits (dedup)",
                "INSERT INTO file_changes": "insert file_changes",
                "UPDATE repos r SET watermark": "_touch",
            }
            labels |= {"CREATE TEMP": "staging tables", "FOR KEY SHARE": "lock repos"}
            acquire = store.pool.acquire

            class _Acquired:
                def __init__(self) -> None:
                    self._cm = acquire()

                async def __aenter__(self) -> Any:
                    con = await self._cm.__aenter__()
                    self.con = con
                    return _Timed(con, spent, labels)

                async def __aexit__(self, *exc: Any) -> Any:
                    return await self._cm.__aexit__(*exc)

            store._pool = type(
                "P", (), {"acquire": staticmethod(_Acquired), "close": store.pool.close}
            )()
        async with store.pool.acquire() as con:
            backend = await con.fetchval("SELECT pg_backend_pid()")
        server = _cpu(backend)
        client = time.process_time()
        applied = 0
        started = time.perf_counter()
        for i in range(0, len(values), batch):
            t = time.perf_counter()
            events = [decode_event(v) for v in values[i : i + batch]]
            spent["decode"] += time.perf_counter() - t
            t = time.perf_counter()
            applied += await store.apply(events)
            spent["apply (all)"] += time.perf_counter() - t
        seconds = time.perf_counter() - started
        client_cpu, server_cpu = time.process_time() - client, _cpu(backend) - server
        return {
            "seconds": seconds,
            "applied": applied,
            "spent": dict(spent),
            "client_cpu": client_cpu,
            "server_cpu": server_cpu,
            "floor": await _floor(store, values, batch),
        }
    finally:
        await store.close()


async def _floor(store: Any, values: list[bytes], batch: int) -> float:
    """Seconds to decode `values` and COPY their staged facts into unlogged tables without
    keys or indexes, a batch per transaction (the reference)."""
    from metre.contracts.events import CommitEvent, decode_event
    from metre.processors import setfolds
    from metre.processors.sink import stage

    async with store.pool.acquire() as con:
        await con.execute(setfolds.STAGE)
        for name in ("commits", "files"):
            await con.execute(
                f"CREATE UNLOGGED TABLE floor_{name} AS SELECT * FROM stage_{name} WITH NO DATA"
            )
        started = time.perf_counter()
        for i in range(0, len(values), batch):
            events = [decode_event(v) for v in values[i : i + batch]]
            staged = stage(e for e in events if isinstance(e, CommitEvent))
            async with con.transaction():
                await con.copy_records_to_table(
                    "floor_commits", records=staged.commits, columns=setfolds.COMMIT_COLUMNS
                )
                await con.copy_records_to_table(
                    "floor_files", records=staged.files, columns=setfolds.FILE_COLUMNS
                )
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", type=Path)
    from metre.settings import Settings

    default_batch = Settings.model_fields["batch_size"].default
    parser.add_argument("--batch", type=int, default=default_batch)
    parser.add_argument("--phases", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="first N events only")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "metre-bench-events.pickle"
    )
    args = parser.parse_args()
    values = events_of(args.repo.resolve(), args.cache)
    if args.limit:
        values = values[: args.limit]
    before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = asyncio.run(run(values, args.batch, args.phases, Path(tmp)))
        finally:
            from metre.pg import stop_embedded

            stop_embedded(Path(tmp) / "pgdata")
    s, n = r["seconds"], len(values)
    cpu = r["client_cpu"] + r["server_cpu"]
    print(
        f"{n} events, batch {args.batch}: {s:.2f} s, "
        f"{n / s:,.0f} events/s ({r['applied']} applied); "
        f"CPU: client {r['client_cpu']:.2f} s ({1e6 * r['client_cpu'] / n:.0f} us/event, "
        f"{100 * r['client_cpu'] / cpu:.0f}%), PostgreSQL backend {r['server_cpu']:.2f} s "
        f"({1e6 * r['server_cpu'] / n:.0f} us/event, {100 * r['server_cpu'] / cpu:.0f}%); "
        f"reference (decode + COPY of the staged facts, no keys): {r['floor']:.2f} s, "
        f"{n / r['floor']:,.0f} events/s, ratio {s / r['floor']:.2f}; "
        f"machine {os.cpu_count()} cores, load before {before}, after {_load()}"
    )
    for label, t in sorted(r["spent"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:<40} {t:7.2f} s  {100 * t / s:5.1f}%")


if __name__ == "__main__":
    main()
