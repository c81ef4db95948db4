"""The tree diff kernel: hand-made cases on both twins, compiled == reference on generated trees."""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metre import kernels
from metre.kernels import _treediff_reference

FILE, EXEC, LINK, GITLINK, DIR = 0o100644, 0o100755, 0o120000, 0o160000, 0o040000
SideEntry = tuple[bytes, int, bytes]  # (name, mode, sha) of one side in by_name


def compiled_is_built() -> bool:
    """Whether a built ``metre.kernels._treediff`` extension is importable from this checkout."""
    return importlib.util.find_spec("metre.kernels._treediff") is not None


@pytest.fixture(scope="module", params=["c", "python"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """A module with ``tree_diff``: one of the two twins."""
    if request.param == "python":
        return _treediff_reference
    if not compiled_is_built():
        pytest.skip("metre.kernels._treediff is not built (no C compiler at install time)")
    return importlib.import_module("metre.kernels._treediff")


def sha(n: int, length: int = 20) -> bytes:
    return bytes([n]) * length


def git_key(entry: tuple[int, bytes, bytes]) -> bytes:
    mode, name, _ = entry
    return name + b"/" if mode == DIR else name


def tree(*entries: tuple[int, bytes, bytes]) -> bytes:
    """A tree body with `entries` (mode, name, sha) written in git's order."""
    return b"".join(b"%o %s\0%s" % e for e in sorted(entries, key=git_key))


def test_identical_and_empty(impl: ModuleType) -> None:
    t = tree((FILE, b"a", sha(1)), (DIR, b"d", sha(2)))
    assert impl.tree_diff(t, t) == []
    assert impl.tree_diff(b"", b"") == []
    assert impl.tree_diff(b"", t) == [
        (b"a", None, None, FILE, sha(1)),
        (b"d", None, None, DIR, sha(2)),
    ]
    assert impl.tree_diff(t, b"") == [
        (b"a", FILE, sha(1), None, None),
        (b"d", DIR, sha(2), None, None),
    ]


def test_modify_and_mode_change(impl: ModuleType) -> None:
    old = tree((FILE, b"a", sha(1)), (FILE, b"b", sha(2)), (FILE, b"c", sha(3)))
    new = tree((FILE, b"a", sha(9)), (EXEC, b"b", sha(2)), (FILE, b"c", sha(3)))
    assert impl.tree_diff(old, new) == [
        (b"a", FILE, sha(1), FILE, sha(9)),
        (b"b", FILE, sha(2), EXEC, sha(2)),
    ]


def test_file_and_directory_at_one_name_are_delete_and_add(impl: ModuleType) -> None:
    # "foo-bar" sorts between the file "foo" and the directory "foo" ("-" < "/")
    old = tree((FILE, b"foo", sha(1)), (FILE, b"foo-bar", sha(2)))
    new = tree((DIR, b"foo", sha(3)), (FILE, b"foo-bar", sha(2)))
    assert impl.tree_diff(old, new) == [
        (b"foo", FILE, sha(1), None, None),
        (b"foo", None, None, DIR, sha(3)),
    ]
    assert impl.tree_diff(new, old) == [
        (b"foo", None, None, FILE, sha(1)),
        (b"foo", DIR, sha(3), None, None),
    ]


def test_gitlink_sorts_as_a_file(impl: ModuleType) -> None:
    old = tree((DIR, b"sub", sha(1)), (FILE, b"sub.txt", sha(2)))
    new = tree((GITLINK, b"sub", sha(1)), (FILE, b"sub.txt", sha(2)))
    assert impl.tree_diff(old, new) == [
        (b"sub", None, None, GITLINK, sha(1)),
        (b"sub", DIR, sha(1), None, None),
    ]
    link = tree((LINK, b"sub", sha(1)), (FILE, b"sub.txt", sha(2)))
    assert impl.tree_diff(new, link) == [(b"sub", GITLINK, sha(1), LINK, sha(1))]


def test_names_are_compared_as_unsigned_bytes(impl: ModuleType) -> None:
    old = tree((FILE, b"a", sha(1)), (FILE, b"caf\xe9", sha(2)))
    new = tree((FILE, b"a", sha(1)), (FILE, b"caf\xe9", sha(3)), (FILE, b"z", sha(4)))
    assert impl.tree_diff(old, new) == [
        (b"caf\xe9", FILE, sha(2), FILE, sha(3)),
        (b"z", None, None, FILE, sha(4)),
    ]


def test_other_hash_lengths(impl: ModuleType) -> None:
    old = tree((FILE, b"a", sha(1, 32)))
    new = tree((FILE, b"a", sha(2, 32)))
    assert impl.tree_diff(old, new, 32) == [(b"a", FILE, sha(1, 32), FILE, sha(2, 32))]
    with pytest.raises(ValueError, match="positive"):
        impl.tree_diff(old, new, 0)


@pytest.mark.parametrize(
    "body",
    [
        b"100644 a\0" + sha(1)[:19],  # truncated sha
        b"100644 a",  # no NUL
        b"100644",  # no space
        b" a\0" + sha(1),  # no mode
        b"10064x a\0" + sha(1),  # not octal
        b"100644100644 a\0" + sha(1),  # too long a mode
        b"100644 b\0" + sha(1) + b"100644 a\0" + sha(2),  # out of order
        b"100644 a\0" + sha(1) + b"100644 a\0" + sha(2),  # repeated name
        b"40000 a\0" + sha(1) + b"100644 a-b\0" + sha(2),  # "a/" sorts after "a-b"
    ],
)
def test_malformed_or_unsorted_trees_raise(impl: ModuleType, body: bytes) -> None:
    good = tree((FILE, b"a", sha(1)))
    for old, new in ((body, good), (good, body), (body, b""), (b"", body)):
        with pytest.raises(ValueError, match=r"malformed|order"):
            impl.tree_diff(old, new, 20)


def test_rejects_non_bytes(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.tree_diff("100644 a", b"")


def test_the_compiled_kernel_is_loaded_when_built() -> None:
    if os.environ.get("METRE_KERNELS", "").strip().lower() == "python":
        assert kernels.TREEDIFF_IMPLEMENTATION == "python"
        assert kernels.tree_diff is _treediff_reference.tree_diff
    elif compiled_is_built():
        from metre.kernels import _treediff

        assert kernels.TREEDIFF_IMPLEMENTATION == "c"
        assert kernels.tree_diff is _treediff.tree_diff
    else:
        assert kernels.TREEDIFF_IMPLEMENTATION == "python"


# Generated trees: few names that are prefixes of each other and sort around "/" ("-" < "/"
# < "0"), every kind of mode, few shas so that equal entries are common on both sides; names
# that print alike (the byte 0xE9, the characters "\xe9", a backslash, a newline) stay apart.
NAMES = [b"a", b"a-b", b"a0", b"a.b", b"ab", b"b", b"\xff", b"a/"[:1] + b"\x01"]
NAMES += [b"a\xe9", b"a\\xe9", b"a\\", b"a\n"]
entries = st.dictionaries(
    st.sampled_from(NAMES),
    st.tuples(st.sampled_from([FILE, EXEC, LINK, GITLINK, DIR]), st.integers(0, 3)),
    max_size=len(NAMES),
)


def build(spec: dict[bytes, tuple[int, int]]) -> bytes:
    return tree(*((mode, name, sha(n)) for name, (mode, n) in spec.items()))


def by_name(
    old: dict[bytes, tuple[int, int]], new: dict[bytes, tuple[int, int]]
) -> list[_treediff_reference.TreeDiff]:
    """The specification without the walk: a file and a directory at one name never pair."""
    out: list[_treediff_reference.TreeDiff] = []
    keys: dict[bytes, list[SideEntry | None]] = {}
    for side, spec in ((0, old), (1, new)):
        for name, (mode, i) in spec.items():
            keys.setdefault(git_key((mode, name, b"")), [None, None])[side] = (name, mode, sha(i))
    for key in sorted(keys):
        o, n = keys[key]
        if o == n:
            continue
        name = cast(SideEntry, o or n)[0]  # o != n: one side is present
        out.append((name, *(o[1:] if o else (None, None)), *(n[1:] if n else (None, None))))
    return out


@settings(max_examples=400, deadline=None)
@given(old=entries, new=entries)
def test_twins_equal_the_specification(
    old: dict[bytes, tuple[int, int]], new: dict[bytes, tuple[int, int]]
) -> None:
    expected = by_name(old, new)
    assert _treediff_reference.tree_diff(build(old), build(new)) == expected
    if compiled_is_built():
        from metre.kernels import _treediff

        assert _treediff.tree_diff(build(old), build(new)) == expected


@settings(max_examples=400, deadline=None)
@given(
    old=st.binary(max_size=80) | entries.map(build),
    new=st.binary(max_size=80) | entries.map(build),
    cut=st.integers(0, 80),
)
def test_compiled_equals_reference_on_any_bytes(old: bytes, new: bytes, cut: int) -> None:
    if not compiled_is_built():
        pytest.skip("metre.kernels._treediff is not built")
    from metre.kernels import _treediff

    for a, b in ((old, new), (old[:cut], new), (old, new[:cut])):
        try:
            expected = _treediff_reference.tree_diff(a, b)
        except ValueError:
            with pytest.raises(ValueError, match=r"malformed|order"):
                _treediff.tree_diff(a, b)
        else:
            assert _treediff.tree_diff(a, b) == expected
