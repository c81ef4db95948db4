"""Chaos: metre's distributed roles ingest a generated history while faults are injected, and
the result must equal a fault-free run exactly (I/O: processes, a broker, PostgreSQL, git).

    python -m bench.chaos --commits 5000 --per-kind 1000 [--seed 1]

The faults, the pacing and the definitions of lost and double-counted are testkit/chaos.py's
(tests/metre/test_chaos.py runs the same engine, reduced); this is its command line. Exit 0
only when nothing was lost or double-counted, no role crashed and every fault healed.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from testkit.broker import Broker, free_port
from testkit.chaos import KINDS, run_chaos
from testkit.postgres import PgServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--faults", type=int, default=None, help="in all, round-robin")
    parser.add_argument(
        "--per-kind", type=int, default=10, help="faults of each kind (unless --faults)"
    )
    parser.add_argument(
        "--mid-share", type=float, default=0.2, help="share of each kind meant for the backfill"
    )
    parser.add_argument(
        "--interval", type=float, default=0.2, help="seconds between faults after the backfill"
    )
    parser.add_argument(
        "--heal-wait",
        type=float,
        default=180.0,
        help="after the backfill, wait up to this for a fault to heal before the next "
        "(longer than a poller's 120 s poll lease, so heals do not overlap; 0: paced by "
        "--interval alone, faults overlap)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    from metre.pg import start_embedded, stop_embedded
    from testkit.histories import generate_history

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
            repo, broker, await PgServer.of(dsn), root / "work",
            faults=args.faults or args.per_kind * len(KINDS), seed=args.seed,
            mid_share=args.mid_share, interval=args.interval, heal_wait=args.heal_wait,
            settle_timeout=600.0,
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
    ok = ok and not report.unhealed
    if ok and not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
