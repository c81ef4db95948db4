"""Both twins against the git CLI on many generated blob pairs (one git run for all of them)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from metre.kernels import _reference
from tests.kernels.gitoracle import Pair, git_numstat
from tests.kernels.test_linediff import CASES

FREQUENT = [b"\n", b"{\n", b"}\n", b"    }\n", b"\n", b"\r\n", b"end\n"]


def _finish(rng: random.Random, old: list[bytes], new: list[bytes]) -> Pair:
    """Join lines; sometimes drop a final newline, sometimes on one side only."""
    a, b = b"".join(old), b"".join(new)
    if rng.random() < 0.15:
        a = a.rstrip(b"\n")
    if rng.random() < 0.15:
        b = b.rstrip(b"\n")
    return a, b


def _edit(
    rng: random.Random, lines: list[bytes], block: Callable[[int], list[bytes]]
) -> list[bytes]:
    new = list(lines)
    for _ in range(rng.randint(0, 12)):
        pos, k = rng.randint(0, len(new)), rng.randint(1, 30)
        roll = rng.random()
        if roll < 0.45:
            new[pos : pos + k] = block(rng.randint(1, 30))
        elif roll < 0.7:
            new[pos:pos] = block(k)
        elif roll < 0.9:
            del new[pos : pos + k]
        else:  # move a block: frequent in refactorings, hard for a diff
            moved = new[pos : pos + k]
            del new[pos : pos + k]
            at = rng.randint(0, len(new))
            new[at:at] = moved
    return new


def small_alphabet(rng: random.Random, count: int) -> Iterator[Pair]:
    """Lines drawn from a few values with skewed weights: many repeats, small limits."""
    for _ in range(count):
        alphabet = FREQUENT + [b"u%d\n" % i for i in range(rng.randint(1, 30))]
        weights = [rng.random() for _ in alphabet]

        def block(
            k: int, alphabet: list[bytes] = alphabet, w: list[float] = weights
        ) -> list[bytes]:
            return rng.choices(alphabet, w, k=k)

        old = block(rng.randint(0, 300))
        yield _finish(rng, old, _edit(rng, old, block))


def code_like(rng: random.Random, count: int) -> Iterator[Pair]:
    """Fresh lines among blank lines and braces: the shape that triggers git's discard rule."""
    serial = iter(range(10**9))
    for _ in range(count):
        share = rng.random() * 0.6

        def block(k: int, share: float = share) -> list[bytes]:
            return [
                rng.choice(FREQUENT) if rng.random() < share else b"stmt %d;\n" % next(serial)
                for _ in range(k)
            ]

        old = block(rng.choice([rng.randint(0, 60), rng.randint(0, 700)]))
        yield _finish(rng, old, _edit(rng, old, block))


def edge_cases(rng: random.Random) -> Iterator[Pair]:
    """Empty sides, final newlines, CRLF, binary at the 8000-byte boundary, the cases table."""
    yield from ((old, new) for old, new, _ in CASES)
    for text in (b"a", b"a\n", b"\n", b"a\r\n", b"a\nb", b"\n\n\n"):
        yield b"", text
        yield text, b""
        yield text, text + b"x"
        yield text + b"\n", text
    for nul_at in (0, 7998, 7999, 8000, 8001):
        blob = b"a" * nul_at + b"\x00" + b"\nmore\n"
        yield blob, b"text\n"
        yield b"text\n", blob
        yield blob, blob + b"x\n"
    yield b"a\r\nb\r\nc\r\n", b"a\nb\r\nc\n"
    yield b"x" * 100_000, b"x" * 100_000 + b"\n"


def scan_window() -> Iterator[Pair]:
    """A blank line whose fate depends on how far git looks around it (100 lines each way).

    Old: maybes (braces, frequent in the new file), changed lines, the blank, changed lines.
    The blank is the only one in old's middle, so whether git sets it aside shows in the counts.
    """
    head = [b"\n", b"}\n"] * 40 + [b"keep\n"]
    new = b"".join([*head, *(b"n%d\n" % i for i in range(30)), b"\n", b"tail\n"])
    for maybes, before, after in itertools.product((48, 50, 52), (49, 50, 51), (98, 99, 100, 101)):
        old = [*head, *[b"}\n"] * maybes, *(b"o%d\n" % i for i in range(before)), b"\n"]
        old += [*(b"p%d\n" % i for i in range(after)), b"tail\n"]
        yield b"".join(old), new


def limits(rng: random.Random) -> Iterator[Pair]:
    """File sizes across the steps of the "maybe" limit."""
    for n in (3, 4, 15, 16, 17, 63, 64, 65, 255, 256, 1023, 1024, 4096):
        blanks = max(1, n // 8)
        old = [b"\n" if i % 8 == 0 else b"o%d\n" % i for i in range(n)]
        new = [b"\n" if i % 8 == 0 else b"n%d\n" % i for i in range(n + rng.randint(-1, 1))]
        new[: blanks // 2] = [b"\n"] * (blanks // 2)
        yield b"".join(old), b"".join(new)


def capped_limit() -> Pair:
    """Files over 2**20 lines, where the limit (2048 uncapped) is capped at 1024."""
    filler = b"f\n" * (1 << 20)

    def middle(tag: bytes) -> bytes:
        return b"".join(b"%s%d a\n%s%d b\n%s%d c\n%s%d d\n\n" % ((tag, i) * 4) for i in range(1500))

    return filler + middle(b"old") + b"end\n", filler + middle(b"new") + b"end\n"


def pure_lcs(old: bytes, new: bytes) -> tuple[int, int]:
    """(added, removed) by a true longest common subsequence, without git's preparation."""
    ids: dict[bytes, int] = {}
    a = _reference._intern(old, ids)
    b = _reference._intern(new, ids)
    common = _reference.lcs_length(a, b)
    return len(b) - common, len(a) - common


FAMILIES: dict[str, Callable[[random.Random], list[Pair]]] = {
    "small_alphabet": lambda rng: list(small_alphabet(rng, 600)),
    "code_like": lambda rng: list(code_like(rng, 600)),
    "edge_cases": lambda rng: list(edge_cases(rng)),
    "scan_window": lambda rng: list(scan_window()),
    "limits": lambda rng: list(limits(rng)),
    "capped_limit": lambda rng: [capped_limit()],
}


@pytest.fixture(scope="session")
def oracle() -> dict[str, list[tuple[Pair, tuple[int, int] | None]]]:
    """Every family's pairs with git's answers, from a single repository and diff."""
    rng = random.Random(20240611)
    families = {name: make(rng) for name, make in FAMILIES.items()}
    everything = [pair for pairs in families.values() for pair in pairs]
    answers = iter(git_numstat(everything))
    return {name: [(pair, next(answers)) for pair in pairs] for name, pairs in families.items()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_numstat_equals_git(
    impl: ModuleType,
    oracle: dict[str, list[tuple[Pair, tuple[int, int] | None]]],
    family: str,
) -> None:
    wrong = [
        (len(old), len(new), got, want)
        for (old, new), want in oracle[family]
        if (got := impl.numstat(old, new)) != want
    ]
    assert wrong == [], f"{len(wrong)} of {len(oracle[family])} differ from git"


def test_the_oracle_sees_binary_and_the_discard_rule(
    oracle: dict[str, list[tuple[Pair, tuple[int, int] | None]]],
) -> None:
    """The generated pairs really exercise what differs from a plain LCS and from text."""
    answers = [answer for pairs in oracle.values() for _, answer in pairs]
    assert answers.count(None) >= 10
    beyond_lcs = [
        name
        for name, pairs in oracle.items()
        for (old, new), answer in pairs
        # the pure LCS in Python is slow where the files share little: skip the big ones
        if answer is not None and len(old) + len(new) < 16_000 and answer != pure_lcs(old, new)
    ]
    assert beyond_lcs.count("code_like") >= 20
    assert "scan_window" in beyond_lcs
    assert "limits" in beyond_lcs


def test_the_limit_is_capped(
    oracle: dict[str, list[tuple[Pair, tuple[int, int] | None]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """git sets the blank lines aside (a pure LCS matches all 1500); uncapped, it would not."""
    ((old, new), answer) = oracle["capped_limit"][0]
    assert answer == (7499, 7499)
    monkeypatch.setattr(_reference, "MAX_MAYBE_LIMIT", 1 << 30)
    assert _reference.numstat(old, new) != answer


@pytest.mark.parametrize("window", [50, 99, 101, 200])
def test_the_scan_window_is_100_lines(
    oracle: dict[str, list[tuple[Pair, tuple[int, int] | None]]],
    monkeypatch: pytest.MonkeyPatch,
    window: int,
) -> None:
    """Another window gives other counts than git on the scan_window family."""
    monkeypatch.setattr(_reference, "SCAN_WINDOW", window)
    assert any(_reference.numstat(*pair) != answer for pair, answer in oracle["scan_window"])


def test_case_table_is_what_git_says(
    oracle: dict[str, list[tuple[Pair, tuple[int, int] | None]]],
) -> None:
    answers = dict(oracle["edge_cases"])
    for old, new, expected in CASES:
        assert answers[(old, new)] == (None if b"\0" in old + new else expected)


def test_a_pure_lcs_differs_from_git_where_the_kernel_does_not(impl: ModuleType) -> None:
    old, new, _ = CASES[-1]
    (git,) = git_numstat([(old, new)])
    assert git == (199, 199)
    assert pure_lcs(old, new) == (160, 160)
    assert impl.count_lines(old, new) == git
