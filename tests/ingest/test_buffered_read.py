"""The read-ahead over an HTTP response body returns exactly what the body holds, in the sizes
asked for, whatever sizes the response hands out (as urllib3 does, up to what was asked)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from metre.ingest.transport import _BufferedRead


def _source(body: bytes, rng: random.Random) -> tuple[list[int], Callable[[int], bytes]]:
    asked: list[int] = []
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        asked.append(n)
        got = body[pos : pos + rng.randint(1, n)]  # a short read, as a socket may give
        pos += len(got)
        return got

    return asked, read


@pytest.mark.parametrize("seed", range(20))
def test_reads_return_the_body_in_the_sizes_asked(seed: int) -> None:
    rng = random.Random(seed)
    body = rng.randbytes(rng.randint(0, 300_000))
    asked, read = _source(body, rng)
    buffered = _BufferedRead(read)
    out: list[bytes] = []
    while True:
        n = rng.choice([4, rng.randint(1, 70), rng.randint(1, 200_000)])
        got = buffered(n)
        assert len(got) == n or (len(got) < n and sum(map(len, out)) + len(got) == len(body))
        out.append(got)
        if len(got) < n:
            break
    assert b"".join(out) == body
    assert buffered(4) == b""  # after the end, still the end
    assert all(n >= _BufferedRead.CHUNK for n in asked)  # never a small read of the response
