"""Writing packs of whole objects and their version-2 index (I/O: writes one pack directory).

Why not dulwich's writer: after writing a pack, dulwich builds its index by reading the pack
back and inflating every object in Python, and `add_pack_data` also parses every object,
refusing a whole pack for one date git accepts. Here each object's name, CRC and offset are
known while it is written, so the index costs nothing more, and nothing is parsed.

What is written follows git's documented pack format: ``PACK``, version 2, the object count,
then per object a header (type in 3 bits, size in little-endian base-128) and its zlib
stream, then the SHA-1 of all of that; the index: ``\\377tOc``, version 2, 256 cumulative
fan-out counts, the sorted names, their CRC-32s, 4-byte offsets (an index into a table of
8-byte offsets for those past 2 GiB), the pack's checksum and the index's own. Objects are
stored whole (no deltas): the packs written here hold what one poll brought, which is small,
and a delta search is what made the old path cost as much as the source's history.

Every object's name is checked against its content as it is written (`ObjectCorrupt` names
the one object that is wrong): a damaged source is refused object by object.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = ["ObjectCorrupt", "PackWriter", "copy_file", "entry_bytes", "object_name", "write_index"]

TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
_LEVEL = 1
"""zlib level: these packs are small and short-lived (a later repack rewrites them)."""


class ObjectCorrupt(ValueError):
    """An object's content does not hash to its name (or it cannot be stored)."""


def object_name(type_num: int, data: bytes) -> bytes:
    """The binary SHA-1 name git gives an object of this type and content."""
    h = hashlib.sha1(b"%s %d\0" % (TYPE_NAMES[type_num], len(data)), usedforsecurity=False)
    h.update(data)
    return h.digest()


def _entry_header(type_num: int, size: int) -> bytes:
    out = bytearray()
    c = (type_num << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(c | 0x80)
        c = size & 0x7F
        size >>= 7
    out.append(c)
    return bytes(out)


def entry_bytes(type_num: int, data: bytes) -> bytes:
    """One whole object as a pack entry: its header and its zlib stream."""
    return _entry_header(type_num, len(data)) + zlib.compress(data, _LEVEL)


def write_index(path: Path, entries: list[tuple[bytes, int, int]], pack_checksum: bytes) -> None:
    """Write the version-2 index of a pack: `entries` are (binary name, crc32, offset)."""
    entries = sorted(entries)
    fanout = [0] * 256
    for name, _, _ in entries:
        fanout[name[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    large: list[int] = []
    small = bytearray()
    for _, _, offset in entries:
        if offset < 0x80000000:
            small += struct.pack(">I", offset)
        else:
            small += struct.pack(">I", 0x80000000 | len(large))
            large.append(offset)
    body = b"".join(
        (
            b"\xfftOc\x00\x00\x00\x02",
            struct.pack(">256I", *fanout),
            b"".join(name for name, _, _ in entries),
            b"".join(struct.pack(">I", crc) for _, crc, _ in entries),
            bytes(small),
            b"".join(struct.pack(">Q", o) for o in large),
            pack_checksum,
        )
    )
    with open(path, "wb") as f:
        f.write(body)
        f.write(hashlib.sha1(body, usedforsecurity=False).digest())


class PackWriter:
    """Collects whole objects into a new pack of `pack_dir`; `finish()` lands it (pack first,
    index last, renamed into place: a crash leaves at most a temporary file, which nothing
    reads) and returns its path, or None when nothing was added. Use as a context manager:
    leaving it without `finish()` removes the temporary files."""

    def __init__(self, pack_dir: Path) -> None:
        self.pack_dir = Path(pack_dir)
        self._body: BinaryIO = tempfile.TemporaryFile(  # noqa: SIM115 (closed in __exit__)
            dir=self.pack_dir, prefix="tmp-body-"
        )
        self._entries: list[tuple[bytes, int, int]] = []
        self._names: set[bytes] = set()
        self._offset = 12

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._body.close()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, name: bytes | None, type_num: int, data: bytes) -> bytes:
        """Add one object (`name`: its binary name to check, or None to compute it); returns
        its name. Raises `ObjectCorrupt` when the content does not hash to `name`."""
        if type_num not in TYPE_NAMES:
            raise ObjectCorrupt(f"object of unknown type {type_num}")
        actual = object_name(type_num, data)
        if name is not None and actual != name:
            raise ObjectCorrupt(
                f"object {name.hex()} is corrupt (its content hashes to {actual.hex()})"
            )
        if actual in self._names:
            return actual
        raw = entry_bytes(type_num, data)
        self._body.write(raw)
        self._entries.append((actual, zlib.crc32(raw), self._offset))
        self._names.add(actual)
        self._offset += len(raw)
        return actual

    def finish(self) -> Path | None:
        if not self._entries:
            return None
        header = b"PACK" + struct.pack(">II", 2, len(self._entries))
        digest = hashlib.sha1(header, usedforsecurity=False)
        fd, tmp = tempfile.mkstemp(dir=self.pack_dir, prefix="tmp-pack-")
        tmp_idx = f"{tmp}.idx"
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(header)
                self._body.seek(0)
                while chunk := self._body.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                checksum = digest.digest()
                out.write(checksum)
            write_index(Path(tmp_idx), self._entries, checksum)
            final = self.pack_dir / f"pack-{checksum.hex()}"
            os.replace(tmp, f"{final}.pack")
            os.replace(tmp_idx, f"{final}.idx")
        finally:
            for leftover in (tmp, tmp_idx):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(leftover)
        return final.with_suffix(".pack")


def copy_file(src: Path, dest: Path) -> None:
    """Hard-link `src` to `dest` (packs never change once written, as `git clone --local`
    relies on), or copy it where a link is not possible (another file system, not ours)."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
