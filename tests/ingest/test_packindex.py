"""Received packs indexed by metre's compiled path equal what `git index-pack` writes; thin
packs are completed from the mirror; a damaged object is refused by its offset."""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import pytest

from metre.ingest.packindex import PackRefused, land_pack
from metre.ingest.packs import PackReader
from tests.fixtures.gitrepo import GitRepoBuilder, run_git


def _repo(path: Path, commits: int) -> GitRepoBuilder:
    b = GitRepoBuilder(path)
    for i in range(commits):
        b.write(f"f{i % 4}.txt", b"".join(b"line %d %d\n" % (i, j) for j in range(40 + i)))
        b.commit(f"c{i}", date=f"2021-01-{i % 28 + 1:02d}T00:00:00+0000")
    return b


def _pack(repo: Path, revs: bytes, *flags: str) -> bytes:
    return run_git(repo, "pack-objects", "--revs", "--stdout", "-q", *flags, stdin=revs)


def test_index_equals_git_index_pack(tmp_path: Path) -> None:
    b = _repo(tmp_path / "src", 12)
    data = _pack(b.path, b"HEAD\n")
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / "tmp-in").write_bytes(data)
    landed = land_pack(pack_dir / "tmp-in", pack_dir, lambda sha: None)
    assert landed is not None
    assert landed.read_bytes() == data
    shutil.copy(landed, tmp_path / "git.pack")
    run_git(tmp_path, "index-pack", "-o", str(tmp_path / "git.idx"), str(tmp_path / "git.pack"))
    assert landed.with_suffix(".idx").read_bytes() == (tmp_path / "git.idx").read_bytes()
    assert sorted(pack_dir.iterdir()) == [landed.with_suffix(".idx"), landed]


def test_a_thin_pack_is_completed_from_the_mirror(tmp_path: Path) -> None:
    b = _repo(tmp_path / "src", 10)
    old = b.head()
    mirror = tmp_path / "mirror.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(b.path), str(mirror))
    run_git(mirror, "repack", "-a", "-d", "-q")  # a mirror holds packs only
    for i in range(3):
        b.write("f1.txt", b"".join(b"line 9 %d\n" % j for j in range(49)) + b"more %d\n" % i)
        b.commit(f"n{i}", date="2021-02-01T00:00:00+0000")
    thin = _pack(b.path, b"HEAD\n^%s\n" % old.encode(), "--thin")
    pack_dir = mirror / "objects" / "pack"
    (pack_dir / "tmp-in").write_bytes(thin)
    reader = PackReader(type("S", (), {"path": str(mirror / "objects")})())
    try:
        landed = land_pack(pack_dir / "tmp-in", pack_dir, reader.get_raw_binary)
    finally:
        reader.close()
    assert landed is not None
    count = struct.unpack(">I", landed.read_bytes()[8:12])[0]
    assert count > struct.unpack(">I", thin[8:12])[0]  # bases appended
    run_git(mirror, "update-ref", "refs/heads/main", b.head())
    run_git(mirror, "fsck", "--strict", "--no-dangling")
    run_git(mirror, "verify-pack", str(landed.with_suffix(".idx")))


def test_a_damaged_object_is_refused_by_its_offset(tmp_path: Path) -> None:
    b = _repo(tmp_path / "src", 3)
    data = bytearray(_pack(b.path, b"HEAD\n", "--no-reuse-delta", "--depth=0"))
    # the first entry's zlib stream: flip a byte inside it, then fix the pack checksum
    start = 12
    while data[start] & 0x80:
        start += 1
    data[start + 4] ^= 0xFF
    data[-20:] = hashlib.sha1(bytes(data[:-20])).digest()
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / "tmp-in").write_bytes(bytes(data))
    with pytest.raises(PackRefused, match=r"offset 12 .*malformed"):
        land_pack(pack_dir / "tmp-in", pack_dir, lambda sha: None)
    assert list(pack_dir.iterdir()) == []  # nothing landed, the temporary file removed
