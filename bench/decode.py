"""Decoding speed: microseconds per event that `decode_event` takes on a real history's
encoded commit events (pure CPU: no database, no broker).

Run: python -P bench/decode.py REPO [--rounds N] [--cache PATH]

The events of REPO's head history are built once and cached (as bench/processor.py does, whose
cache this shares). Each round decodes every event; the best round counts. The reference, in
the same run: `orjson.loads` of the same bytes (parsing alone, no validation), so the ratio
says what validation costs on top of reading the JSON at all.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _best(fn: Callable[[bytes], Any], values: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for v in values:
            fn(v)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    import orjson

    from bench.processor import _load, events_of
    from metre.contracts.events import decode_event

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("repo", type=Path, help="a git directory")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "metre-bench-events.pickle"
    )
    args = parser.parse_args()
    values = events_of(args.repo.resolve(), args.cache)
    files = sum(len(orjson.loads(v)["files"]) for v in values)
    before = _load()
    decode = _best(decode_event, values, args.rounds)
    parse = _best(orjson.loads, values, args.rounds)
    n = len(values)
    print(
        f"{n} events ({files / n:.1f} files/event, {sum(map(len, values)) / n:,.0f} bytes/event): "
        f"decode_event {1e6 * decode / n:.2f} us/event; reference orjson.loads "
        f"{1e6 * parse / n:.2f} us/event, ratio {decode / parse:.2f}; "
        f"best of {args.rounds}; machine {os.cpu_count()} cores, load before {before}, "
        f"after {_load()}"
    )


if __name__ == "__main__":
    main()
