"""Decoding speed: microseconds per event that `decode_event` takes on a real history's
encoded commit events (pure CPU: no database, no broker).

Run: python -P bench/decode.py REPO [--rounds N] [--cache PATH]

The events of REPO's head history are built once and cached (as bench/processor.py does, whose
cache this shares). Each round decodes every event, then parses every event with the reference,
`orjson.loads` (parsing alone, no validation), so both see the same load; the ratio says what
validation and building the events cost on top of reading the JSON at all. Times are this
process's CPU time (the loop is single-threaded, so other processes on a busy machine stretch
the wall clock, not it); the best round of each counts.
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


def _cpu(fn: Callable[[bytes], Any], values: list[bytes]) -> float:
    t = time.process_time()
    for v in values:
        fn(v)
    return time.process_time() - t


def main() -> None:
    import orjson

    from bench.processor import _load, events_of
    from metre.contracts.events import decode_event

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("repo", type=Path, help="a git directory")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "metre-bench-events.pickle"
    )
    args = parser.parse_args()
    values = events_of(args.repo.resolve(), args.cache)
    files = sum(len(orjson.loads(v)["files"]) for v in values)
    before = _load()
    rounds = [(_cpu(decode_event, values), _cpu(orjson.loads, values)) for _ in range(args.rounds)]
    decode, parse = min(r[0] for r in rounds), min(r[1] for r in rounds)
    n = len(values)
    print(
        f"{n} events ({files / n:.1f} files/event, {sum(map(len, values)) / n:,.0f} bytes/event): "
        f"decode_event {1e6 * decode / n:.2f} us/event (CPU); reference orjson.loads "
        f"{1e6 * parse / n:.2f} us/event, ratio {decode / parse:.2f}; "
        f"best of {args.rounds}; machine {os.cpu_count()} cores, load before {before}, "
        f"after {_load()}"
    )


if __name__ == "__main__":
    main()
