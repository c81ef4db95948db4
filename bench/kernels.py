"""Benchmark: the compiled line-count kernel against its pure-Python twin, same pairs, same run.

Usage: ``python -m bench.kernels [pairs]`` from the repository root (run as a script, this
file's name would shadow the ``kernels`` package). Prints MB/s of input for each and their ratio.
The pairs look like source edits: a few blocks changed in files of a few hundred lines, with
blank lines and braces, plus appends to a large file.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

from metre.kernels import _reference

Pair = tuple[bytes, bytes]


def source_like_pairs(count: int, seed: int = 1) -> list[Pair]:
    rng = random.Random(seed)
    serial = iter(range(10**9))
    frequent = [b"\n", b"{\n", b"}\n", b"    }\n", b"        return;\n"]

    def block(k: int) -> list[bytes]:
        return [
            rng.choice(frequent) if rng.random() < 0.3 else b"    stmt_%d(x, y);\n" % next(serial)
            for _ in range(k)
        ]

    pairs = []
    for _ in range(count):
        old = block(rng.randint(20, 800))
        new = list(old)
        for _ in range(rng.randint(1, 6)):
            at = rng.randint(0, len(new))
            new[at : at + rng.randint(0, 15)] = block(rng.randint(0, 15))
        pairs.append((b"".join(old), b"".join(new)))
    big = b"".join(block(50_000))
    pairs.append((big, big + b"".join(block(20))))
    return pairs


def throughput(count: Callable[[bytes, bytes], tuple[int, int]], pairs: list[Pair]) -> float:
    """MB of input (both sides) counted per second."""
    size = sum(len(a) + len(b) for a, b in pairs)
    started = time.perf_counter()
    for a, b in pairs:
        count(a, b)
    return size / (time.perf_counter() - started) / 1e6


def main() -> None:
    pairs = source_like_pairs(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
    try:
        from metre.kernels import _linediff
    except ImportError:
        print("metre.kernels._linediff is not built: nothing to compare")
        return
    for a, b in pairs:
        assert _linediff.count_lines(a, b) == _reference.count_lines(a, b)
    c = throughput(_linediff.count_lines, pairs)
    py = throughput(_reference.count_lines, pairs)
    print(f"pairs: {len(pairs)}, input: {sum(len(a) + len(b) for a, b in pairs) / 1e6:.1f} MB")
    print(f"compiled: {c:8.1f} MB/s")
    print(f"python:   {py:8.1f} MB/s")
    print(f"ratio compiled/python: {c / py:.1f}x")


if __name__ == "__main__":
    main()
