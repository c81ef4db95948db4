"""Processor speed: events/s that `PgStore.apply_changes` writes into PostgreSQL, and where the
time of one batch goes (I/O: a fresh embedded PostgreSQL per run, events from a real history).

Run: python -P bench/processor.py REPO [--batch 500] [--phases] [--limit N]

The events of REPO's history (a git directory) are built once and cached as encoded bytes in
the temporary directory (`--cache`); each run then starts a fresh database and applies them in
batches of `--batch` (decode included, the way the processor receives them). `--phases`
instead times each statement of `apply` (server time as seen by the client) and the Python
work between them, summed over the run.
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
            labels |= {"COPY ": "copy", "CREATE TEMP": "temp tables", "TRUNCATE": "truncate"}
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
        return {
            "seconds": seconds,
            "applied": applied,
            "spent": dict(spent),
            "client_cpu": time.process_time() - client,
            "server_cpu": _cpu(backend) - server,
        }
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--batch", type=int, default=500)
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
    s = r["seconds"]
    print(
        f"{len(values)} events, batch {args.batch}: {s:.2f} s, "
        f"{len(values) / s:,.0f} events/s ({r['applied']} applied); "
        f"CPU: client {r['client_cpu']:.2f} s, server backend {r['server_cpu']:.2f} s; "
        f"load before {before}, after {_load()}"
    )
    for label, t in sorted(r["spent"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:<40} {t:7.2f} s  {100 * t / s:5.1f}%")


if __name__ == "__main__":
    main()
