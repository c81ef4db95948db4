"""Property tests: the compiled twin equals the reference; both keep the invariants of a diff."""

from __future__ import annotations

from types import ModuleType
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metre.kernels import _reference

# Few distinct lines so that most repeat on the other side (files of 16 to 63 lines make the
# "maybe" limit 8), plus lines found on one side only, which git sets aside as changed.
COMMON = [b"", b"{", b"}", b"    }", b"x = 1;", b"return x;", b"a\r"]
OLD_ONLY = [b"old 1", b"old 2", b"old 3"]
NEW_ONLY = [b"new 1", b"new 2", b"new 3", b"a"]

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _text(lines: list[bytes], final_newline: bool) -> bytes:
    body = b"\n".join(lines)
    return body + b"\n" if final_newline and lines else body


@st.composite
def line_pairs(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """An old file and a new one, either unrelated or the old one edited in a few places.

    Blocks mostly of one side's own lines with a few common ones sprinkled in are what makes
    git set frequent lines aside; blocks of common lines give Myers repeats to choose among.
    """

    def blocks(own: list[bytes], count: int) -> list[bytes]:
        shapes = st.sampled_from([COMMON + [b""] * 8, own * 6 + [b"", b""]])
        lines: list[bytes] = []
        for _ in range(count):
            lines += draw(st.lists(st.sampled_from(draw(shapes)), max_size=30))
        return lines

    old = blocks(OLD_ONLY, draw(st.integers(0, 6)))
    if draw(st.booleans()):
        new = blocks(NEW_ONLY, draw(st.integers(0, 6)))
    else:
        new = list(old)
        for _ in range(draw(st.integers(0, 5))):
            at = draw(st.integers(0, len(new)))
            cut = draw(st.integers(0, 12))
            new[at : at + cut] = blocks(NEW_ONLY, 1)
    return _text(old, draw(st.booleans())), _text(new, draw(st.booleans()))


# Raw bytes over a tiny alphabet: stresses line boundaries, CRLF and missing final newlines.
raw_pairs = st.tuples(
    st.text("ab\n\r", max_size=60).map(str.encode),
    st.text("ab\n\r", max_size=60).map(str.encode),
)


def _lines(data: bytes) -> int:
    return data.count(b"\n") + (not data.endswith(b"\n") and data != b"")


@pytest.fixture(scope="session")
def compiled() -> ModuleType:
    """The compiled twin; the equality properties are meaningless without it."""
    from tests.kernels.conftest import compiled_is_built

    if not compiled_is_built():
        pytest.skip("metre.kernels._linediff is not built")
    from metre.kernels import _linediff

    return cast(ModuleType, _linediff)  # metre.kernels holds its twins as Any (None if unbuilt)


@PROPERTY
@given(pair=line_pairs())
def test_compiled_equals_reference_on_lines(
    compiled: ModuleType, pair: tuple[bytes, bytes]
) -> None:
    assert compiled.count_lines(*pair) == _reference.count_lines(*pair)


@PROPERTY
@given(pair=raw_pairs)
def test_compiled_equals_reference_on_raw_bytes(
    compiled: ModuleType, pair: tuple[bytes, bytes]
) -> None:
    assert compiled.count_lines(*pair) == _reference.count_lines(*pair)
    # shared prefixes and suffixes around the pair: the compiled twin trims them at byte level
    wrapped = (b"ab\n\r" + pair[0] + b"a\nb", b"ab\n\r" + pair[1] + b"a\nb")
    assert compiled.count_lines(*wrapped) == _reference.count_lines(*wrapped)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=9000), nul_at=st.integers(0, 9000))
def test_compiled_is_binary_equals_reference(
    compiled: ModuleType, data: bytes, nul_at: int
) -> None:
    data = data.replace(b"\0", b"")
    with_nul = data[:nul_at] + b"\0" + data[nul_at:]
    for blob in (data, with_nul):
        assert compiled.is_binary(blob) == _reference.is_binary(blob)
        assert compiled.numstat(blob, b"x\n") == _reference.numstat(blob, b"x\n")


@PROPERTY
@given(pair=line_pairs())
def test_invariants(impl: ModuleType, pair: tuple[bytes, bytes]) -> None:
    old, new = pair
    added, removed = impl.count_lines(old, new)
    assert 0 <= added <= _lines(new)
    assert 0 <= removed <= _lines(old)
    assert added - removed == _lines(new) - _lines(old)
    assert impl.count_lines(new, old) == (removed, added)
    assert impl.count_lines(old, old) == (0, 0)
    assert impl.count_lines(b"", new) == (_lines(new), 0)


@PROPERTY
@given(pair=line_pairs())
def test_never_fewer_changes_than_a_pure_lcs(pair: tuple[bytes, bytes]) -> None:
    """git's preparation only sets lines aside: it may match fewer lines than an LCS, never more."""
    old, new = pair
    ids: dict[bytes, int] = {}
    a, b = _reference._intern(old, ids), _reference._intern(new, ids)
    best = _reference.lcs_length(a, b)
    added, removed = _reference.count_lines(old, new)
    assert added >= len(b) - best
    assert removed >= len(a) - best
