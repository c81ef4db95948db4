"""Line counts on hand-made inputs, on both twins; expected values are git's (see test_oracle)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from types import ModuleType

import pytest

from metre import kernels
from tests.kernels.conftest import compiled_is_built

# (old, new, (added, removed)) as git 2.39 counts them; test_oracle checks this table against git.
CASES: list[tuple[bytes, bytes, tuple[int, int]]] = [
    (b"", b"", (0, 0)),
    (b"", b"a\nb\n", (2, 0)),
    (b"a\nb\n", b"", (0, 2)),
    (b"", b"a", (1, 0)),
    (b"a\nb\nc\n", b"a\nb\nc\n", (0, 0)),
    (b"a\nb\nc\n", b"a\nB\nc\n", (1, 1)),
    (b"a\nb", b"a\nb\n", (1, 1)),  # the unterminated last line is another line
    (b"a\nb\n", b"a\nb", (1, 1)),
    (b"a", b"a\nb", (2, 1)),
    (b"a\r\nb\r\n", b"a\nb\r\n", (1, 1)),  # CR is an ordinary byte
    (b"\n\n\n", b"\n\n", (0, 1)),
    (b"x\ny\nz\n", b"z\ny\nx\n", (2, 2)),
    (b"a\nb\nc\nd\n", b"b\nc\nd\na\n", (1, 1)),
    (b"a\x00b\n", b"a\x00c\n", (1, 1)),  # count_lines does not care about NUL bytes
    # git sets 39 of the 40 blank lines aside among changed lines: a pure LCS says (160, 160)
    (
        b"".join(b"old%d a\nold%d b\nold%d c\nold%d d\n\n" % ((i,) * 4) for i in range(40))
        + b"tail\n",
        b"".join(b"new%d a\nnew%d b\nnew%d c\nnew%d d\n\n" % ((i,) * 4) for i in range(40))
        + b"tail\n",
        (199, 199),
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), CASES)
def test_count_lines_cases(
    impl: ModuleType, old: bytes, new: bytes, expected: tuple[int, int]
) -> None:
    assert impl.count_lines(old, new) == expected
    assert impl.count_lines(new, old) == expected[::-1]


def test_is_binary_looks_at_the_first_8000_bytes(impl: ModuleType) -> None:
    assert not impl.is_binary(b"")
    assert not impl.is_binary(b"text\n" * 10_000)
    assert impl.is_binary(b"\x00")
    assert impl.is_binary(b"a" * 7999 + b"\x00")
    assert not impl.is_binary(b"a" * 8000 + b"\x00")


def test_numstat_is_none_when_either_side_is_binary(impl: ModuleType) -> None:
    text, blob = b"a\nb\n", b"a\x00b\n"
    assert impl.numstat(text, blob) is None
    assert impl.numstat(blob, text) is None
    assert impl.numstat(blob, blob) is None
    assert impl.numstat(b"", blob) is None
    assert impl.numstat(text, b"a\n") == (0, 1)
    late_nul = b"x" * 8000 + b"\x00\n"
    assert impl.numstat(late_nul, b"y\n") == (1, 1)


def test_a_ten_megabyte_single_line(impl: ModuleType) -> None:
    big = b"x" * 10_000_000
    started = time.perf_counter()
    assert impl.count_lines(big, big + b"\n") == (1, 1)
    assert impl.count_lines(big + b"y", big + b"z") == (1, 1)
    assert impl.count_lines(b"", big) == (1, 0)
    assert time.perf_counter() - started < 10


def test_hundred_thousand_lines_with_scattered_edits(impl: ModuleType) -> None:
    old_lines = [b"line %d\n" % i if i % 7 else b"\n" for i in range(100_000)]
    new_lines = list(old_lines)
    for i in range(0, 100_000, 5_000):
        new_lines[i + 1] = b"changed %d\n" % i
    del new_lines[50_010:50_110]
    new_lines[70_000:70_000] = [b"inserted %d\n" % i for i in range(300)]
    started = time.perf_counter()
    assert impl.count_lines(b"".join(old_lines), b"".join(new_lines)) == (320, 120)
    assert time.perf_counter() - started < 20


def test_rejects_non_bytes(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.count_lines("a\n", b"a\n")
    with pytest.raises(TypeError):
        impl.is_binary(None)


def test_the_compiled_kernel_is_loaded_when_built() -> None:
    if os.environ.get("METRE_KERNELS", "").strip().lower() == "python":
        assert kernels.IMPLEMENTATION == "python"
    elif compiled_is_built():
        assert kernels.IMPLEMENTATION == "c"
        from metre.kernels import _linediff

        assert kernels.numstat is _linediff.numstat
    else:
        assert kernels.IMPLEMENTATION == "python"


@pytest.mark.parametrize(("switch", "expected"), [("python", "python"), ("", "c")])
def test_environment_switch(switch: str, expected: str) -> None:
    if expected == "c" and not compiled_is_built():
        expected = "python"
    env = dict(os.environ, METRE_KERNELS=switch)
    out = subprocess.run(
        [sys.executable, "-c", "from metre import kernels; print(kernels.IMPLEMENTATION)"],
        env=env,
        capture_output=True,
        check=True,
        text=True,
    )
    assert out.stdout.strip() == expected


def test_compiled_kernel_releases_the_gil() -> None:
    """Another thread runs Python code while a long count is under way in C."""
    if not compiled_is_built():
        pytest.skip("metre.kernels._linediff is not built")
    from metre.kernels import _linediff

    rng = random.Random(7)
    alphabet = [b"%d\n" % i for i in range(50)]
    old = b"".join(rng.choices(alphabet, k=6_000))
    new = b"".join(rng.choices(alphabet, k=6_000))
    started = threading.Event()
    times: dict[str, float] = {}

    def work() -> None:
        times["start"] = time.perf_counter()
        started.set()
        _linediff.count_lines(old, new)
        times["end"] = time.perf_counter()

    worker = threading.Thread(target=work)
    worker.start()
    started.wait()
    times["main"] = time.perf_counter()  # only reachable mid-call if the GIL was released
    worker.join()
    duration = times["end"] - times["start"]
    assert duration > 0.05, "the input is too easy to tell"
    assert times["main"] - times["start"] < duration / 2


def test_falls_back_to_the_reference_with_a_logged_warning() -> None:
    """Without the extension, importing still works: a warning on the log, not an exception."""
    code = (
        "import sys; sys.modules['metre.kernels._linediff'] = None\n"  # as if it were never built
        "from metre import kernels; import metre.kernels._reference as r\n"
        "assert kernels.numstat is r.numstat\n"
        "print(kernels.IMPLEMENTATION)"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env={k: v for k, v in os.environ.items() if k != "METRE_KERNELS"},
        capture_output=True,
        check=True,
        text=True,
    )
    assert out.stdout.strip() == "python"
    assert "compiled kernels unavailable" in out.stderr
