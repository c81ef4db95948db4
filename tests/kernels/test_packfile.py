"""The pack file kernel against packs git writes: both twins find every object where
`git show-index` says it is, and read every entry as git stores it (whole objects equal to
`git cat-file`; deltas naming the bases `git verify-pack` names)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metre import kernels
from metre.kernels import _packfile_reference
from tests.fixtures.gitrepo import run_git

_TYPES = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}


def compiled_is_built() -> bool:
    """Whether a built ``metre.kernels._packfile`` extension is importable from this checkout."""
    return importlib.util.find_spec("metre.kernels._packfile") is not None


@pytest.fixture(scope="module", params=["c", "python"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """A module with ``pack_find`` and ``pack_entry``: one of the two twins."""
    if request.param == "python":
        return _packfile_reference
    if not compiled_is_built():
        pytest.skip("metre.kernels._packfile is not built (no C compiler or zlib headers)")
    return importlib.import_module("metre.kernels._packfile")


class Pack:
    """A pack git wrote: its bytes, its index and what git says about each object."""

    def __init__(self, repo: Path) -> None:
        pack_dir = repo / ".git" / "objects" / "pack"
        (idx_path,) = pack_dir.glob("pack-*.idx")
        self.index = idx_path.read_bytes()
        self.data = idx_path.with_suffix(".pack").read_bytes()
        self.offsets: dict[bytes, int] = {}
        for line in run_git(repo, "show-index", stdin=self.index).splitlines():
            off, name = line.split()[:2]
            self.offsets[bytes.fromhex(name.decode())] = int(off)
        # verify-pack -v: "<sha> <type> <size> <packed size> <offset> [<depth> <base sha>]"
        self.bases: dict[bytes, bytes] = {}
        self.kinds: dict[bytes, bytes] = {}
        for line in run_git(repo, "verify-pack", "-v", str(idx_path)).splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[1] in _TYPES:
                name = bytes.fromhex(parts[0].decode())
                self.kinds[name] = parts[1]
                if len(parts) == 7:
                    self.bases[name] = bytes.fromhex(parts[6].decode())


def packed(source: Path, dest: Path, offset_deltas: bool) -> Pack:
    """A clone of `source` repacked into one pack with deep delta chains."""
    shutil.copytree(source, dest)
    run_git(
        dest,
        "-c",
        f"repack.usedeltabaseoffset={'true' if offset_deltas else 'false'}",
        "repack",
        "-adf",
        "--depth=20",
        "--window=20",
    )
    return Pack(dest)


@pytest.fixture(scope="module", params=[True, False], ids=["ofs-delta", "ref-delta"])
def pack(
    request: pytest.FixtureRequest,
    history_factory: Callable[..., Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Pack:
    source = history_factory(120, 5)
    return packed(source, tmp_path_factory.mktemp("pack") / "repo", request.param)


def test_every_object_is_found_where_git_put_it(impl: ModuleType, pack: Pack) -> None:
    for name, offset in pack.offsets.items():
        assert impl.pack_find(pack.index, name) == offset
    absent = bytes(20)
    assert absent not in pack.offsets
    assert impl.pack_find(pack.index, absent) == -1
    assert impl.pack_find(pack.index, b"\xff" * 20) == -1


def test_every_entry_is_read_as_git_stored_it(impl: ModuleType, pack: Pack) -> None:
    by_offset = {off: name for name, off in pack.offsets.items()}
    deltas = 0
    for name, offset in pack.offsets.items():
        type_num, data, base = impl.pack_entry(pack.data, offset)
        if name in pack.bases:
            deltas += 1
            want = pack.bases[name]
            assert (by_offset[base] if type_num == 6 else base) == want
            assert type_num in (6, 7)
        else:
            assert base is None
            assert type_num == _TYPES[pack.kinds[name]]
            assert len(data) > 0 or pack.kinds[name] in (b"blob", b"tree")
    assert deltas > 10


def test_twins_agree_on_every_entry(pack: Pack) -> None:
    if not compiled_is_built():
        pytest.skip("metre.kernels._packfile is not built")
    from metre.kernels import _packfile

    for offset in pack.offsets.values():
        assert _packfile.pack_entry(pack.data, offset) == _packfile_reference.pack_entry(
            pack.data, offset
        )


def test_whole_objects_equal_git_cat_file(
    impl: ModuleType, history_factory: Callable[..., Path], tmp_path: Path
) -> None:
    p = packed(history_factory(120, 5), tmp_path / "repo", True)
    for name, offset in list(p.offsets.items())[:200]:
        if name in p.bases:
            continue
        _, data, _ = impl.pack_entry(p.data, offset)
        assert data == run_git(tmp_path / "repo", "cat-file", p.kinds[name].decode(), name.hex())


def index_with_large_offset(big: int) -> bytes:
    """A one-object version-2 index whose offset lives in the 8-byte table."""
    name = b"\x10" * 20
    fanout = [0] * 0x10 + [1] * (256 - 0x10)
    return (
        b"\xfftOc\x00\x00\x00\x02"
        + struct.pack(">256I", *fanout)
        + name
        + b"\x00" * 4  # CRC
        + struct.pack(">I", 0x80000000)
        + struct.pack(">Q", big)
    )


def test_large_offsets(impl: ModuleType) -> None:
    index = index_with_large_offset(5 << 32)
    assert impl.pack_find(index, b"\x10" * 20) == 5 << 32
    assert impl.pack_find(index, b"\x11" * 20) == -1
    with pytest.raises(ValueError, match="truncated"):
        impl.pack_find(index[:-1], b"\x10" * 20)


@pytest.mark.parametrize(
    "index",
    [b"", b"\xfftOc\x00\x00\x00\x01" + bytes(1024), b"\xfftOc\x00\x00\x00\x02" + bytes(100)],
)
def test_malformed_indexes_raise(impl: ModuleType, index: bytes) -> None:
    with pytest.raises(ValueError, match="index"):
        impl.pack_find(index, bytes(20))


def test_names_are_20_bytes(impl: ModuleType) -> None:
    with pytest.raises(ValueError, match="20 bytes"):
        impl.pack_find(index_with_large_offset(1), b"\x10")


def entry(type_num: int, data: bytes, prefix: bytes = b"") -> bytes:
    """A pack entry header (type, size) followed by `prefix` and `data` deflated."""
    size = len(data)
    head = [(type_num << 4) | (size & 0x0F)]
    size >>= 4
    while size:
        head[-1] |= 0x80
        head.append(size & 0x7F)
        size >>= 7
    return bytes(head) + prefix + zlib.compress(data)


@pytest.mark.parametrize(
    ("body", "offset", "message"),
    [
        (entry(3, b"x\n"), 50, "out of range"),
        (entry(3, b"x\n"), -1, "out of range"),
        (entry(0, b"x\n"), 0, "unknown pack entry type"),
        (entry(5, b"x\n"), 0, "unknown pack entry type"),
        (entry(3, b"x" * 300)[:2], 0, "inflated to"),  # the stream is cut
        (entry(3, b"x\n")[:2] + b"garbage!", 0, "damaged"),
        (b"\xb0", 0, "malformed"),  # a size that never ends
        (entry(6, b"d", b"\x05"), 0, "out of range"),  # a base before the pack
        (entry(7, b"d", b"\x01" * 5), 0, "malformed"),  # a base name cut short
    ],
)
def test_malformed_entries_raise(impl: ModuleType, body: bytes, offset: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        impl.pack_entry(body, offset)


def test_empty_and_large_objects(impl: ModuleType) -> None:
    assert impl.pack_entry(entry(3, b""), 0) == (3, b"", None)
    big = os.urandom(1 << 20) + b"x" * (1 << 20)
    assert impl.pack_entry(b"PACK" + entry(3, big), 4) == (3, big, None)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=3000),
    type_num=st.sampled_from([1, 2, 3, 4, 6, 7]),
    back=st.integers(1, 1 << 20),
    cut=st.integers(0, 3100),
)
def test_compiled_equals_reference_on_entries(
    data: bytes, type_num: int, back: int, cut: int
) -> None:
    if not compiled_is_built():
        pytest.skip("metre.kernels._packfile is not built")
    from metre.kernels import _packfile

    prefix = b""
    if type_num == 6:
        digits = [back & 0x7F]
        back >>= 7
        while back:
            back -= 1
            digits.append(0x80 | (back & 0x7F))
            back >>= 7
        prefix = bytes(reversed(digits))
    elif type_num == 7:
        prefix = bytes(range(20))
    body = b"\x00" * 64 + entry(type_num, data, prefix)
    for buf in (body, body[: 64 + cut]):
        try:
            expected = _packfile_reference.pack_entry(buf, 64)
        except ValueError:
            with pytest.raises(ValueError, match=r"\w"):
                _packfile.pack_entry(buf, 64)
        else:
            assert _packfile.pack_entry(buf, 64) == expected


def test_the_compiled_kernel_is_loaded_when_built() -> None:
    if os.environ.get("METRE_KERNELS", "").strip().lower() == "python":
        assert kernels.PACKFILE_IMPLEMENTATION == "python"
        assert kernels.pack_entry is _packfile_reference.pack_entry
    elif compiled_is_built():
        from metre.kernels import _packfile

        assert kernels.PACKFILE_IMPLEMENTATION == "c"
        assert kernels.pack_find is _packfile.pack_find
    else:
        assert kernels.PACKFILE_IMPLEMENTATION == "python"


def test_pack_object_ends_where_the_next_entry_starts(impl: ModuleType, pack: Pack) -> None:
    """Read in sequence from the first entry, every entry ends where git put the next one,
    and the last where the pack's checksum starts."""
    offsets = sorted(pack.offsets.values())
    for here, following in zip(offsets, [*offsets[1:], len(pack.data) - 20], strict=True):
        type_num, data, base, end = impl.pack_object(pack.data, here)
        assert (type_num, data, base) == impl.pack_entry(pack.data, here)
        assert end == following


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (entry(3, b"x" * 300)[:-6], "inflated to|does not end"),  # the stream is cut
        (entry(3, b"xy")[:1] + zlib.compress(b"xyz"), "longer"),  # more data than the header
        (entry(3, b"x\n")[:2] + b"garbage!", "damaged"),
    ],
)
def test_pack_object_refuses_streams_that_do_not_match(
    impl: ModuleType, body: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        impl.pack_object(body, 0)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), cut=st.integers(0, 3100), tail=st.binary(max_size=30))
def test_compiled_equals_reference_on_pack_object(data: bytes, cut: int, tail: bytes) -> None:
    if not compiled_is_built():
        pytest.skip("metre.kernels._packfile is not built")
    from metre.kernels import _packfile

    body = b"\x00" * 8 + entry(3, data) + tail
    for buf in (body, body[: 8 + cut]):
        try:
            expected = _packfile_reference.pack_object(buf, 8)
        except ValueError:
            with pytest.raises(ValueError, match=r"\w"):
                _packfile.pack_object(buf, 8)
        else:
            assert _packfile.pack_object(buf, 8) == expected
