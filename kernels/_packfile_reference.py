"""Objects inside git pack files, read from their bytes (pure; the spec of kernels/_packfile.c).

Both functions read buffers the caller holds (a memory-mapped ``.idx`` and ``.pack``); they do
no I/O of their own and keep no state. Written from git's documented pack format:

* A version-2 index: ``\\377tOc``, version 2, a fan-out table of 256 big-endian counts (objects
  whose first name byte is <= i), the sorted 20-byte names, a CRC per object, a 4-byte offset
  per object (high bit set: an index into a table of 8-byte offsets that follows).
* A pack entry at an offset: a header of type (3 bits) and inflated size (a little-endian
  base-128 number, 4 bits in the first byte), then for an offset delta (type 6) the distance
  back to its base (base-128, big-endian, each continuation adding one), for a reference delta
  (type 7) the base's 20-byte name; then a zlib stream of `size` bytes.

`pack_find(index, sha) -> offset` (-1 when absent); `pack_entry(pack, offset) -> (type, data,
base)` with ``base`` None for a whole object, the base's offset (int) for an offset delta, its
name (bytes) for a reference delta. Exactly `size` bytes are inflated; what follows in the
stream is not examined (a size of 0 examines nothing). Malformed input raises ValueError
(a damaged zlib stream too).

`pack_object(pack, offset) -> (type, data, base, end)` is `pack_entry` plus the offset just
past the entry's zlib stream (where the next entry of a pack starts), for indexing a pack
read in sequence; it reads the stream to its end, and a stream that holds more than `size`
bytes or does not end raises ValueError.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

__all__ = ["pack_entry", "pack_find", "pack_object"]

_MAGIC = b"\xfftOc\x00\x00\x00\x02"
_NAMES = 8 + 1024
_OFS_DELTA, _REF_DELTA = 6, 7


def pack_find(index: Any, sha: bytes) -> int:
    """Offset of the object named `sha` (20 bytes) in a version-2 pack index, or -1."""
    if len(sha) != 20:
        raise ValueError("an object name is 20 bytes")
    size = len(index)
    if size < _NAMES or bytes(index[:8]) != _MAGIC:
        raise ValueError("not a version-2 pack index")
    first = sha[0]
    count = struct.unpack_from(">I", index, 8 + 4 * 255)[0]
    lo = struct.unpack_from(">I", index, 8 + 4 * (first - 1))[0] if first else 0
    hi = struct.unpack_from(">I", index, 8 + 4 * first)[0]
    offsets = _NAMES + 24 * count
    if not lo <= hi <= count or size < offsets + 4 * count:
        raise ValueError("pack index is truncated or inconsistent")
    while lo < hi:
        mid = (lo + hi) // 2
        at = _NAMES + 20 * mid
        name = bytes(index[at : at + 20])
        if name < sha:
            lo = mid + 1
        elif name > sha:
            hi = mid
        else:
            (off,) = struct.unpack_from(">I", index, offsets + 4 * mid)
            if off & 0x80000000:
                large = offsets + 4 * count + 8 * (off & 0x7FFFFFFF)
                if size < large + 8:
                    raise ValueError("pack index is truncated or inconsistent")
                (off,) = struct.unpack_from(">Q", index, large)
            return int(off)
    return -1


def pack_entry(pack: Any, offset: int) -> tuple[int, bytes, int | bytes | None]:
    """(type, inflated data, base) of the pack entry at `offset` (see the module)."""
    type_num, pos, size, base = _header(pack, offset)
    return type_num, _inflate(pack, pos, size), base


def pack_object(pack: Any, offset: int) -> tuple[int, bytes, int | bytes | None, int]:
    """(type, inflated data, base, end) of the pack entry at `offset` (see the module)."""
    type_num, pos, size, base = _header(pack, offset)
    data, end = _inflate_to_end(pack, pos, size)
    return type_num, data, base, end


def _inflate_to_end(pack: Any, pos: int, size: int) -> tuple[bytes, int]:
    """`size` bytes inflated from the zlib stream at `pos`, and the offset where it ends."""
    d = zlib.decompressobj()
    view = memoryview(pack)
    step = size + (size >> 9) + 64
    parts: list[bytes] = []
    got = 0
    pending = b""
    try:
        while not d.eof:
            if pending:
                data: Any = pending
            else:
                if pos >= len(view):
                    raise ValueError("object data does not end")
                data = view[pos : pos + step]
                pos += len(data)
            try:
                out = d.decompress(data, size + 1 - got)
            except zlib.error as exc:
                raise ValueError(f"damaged object data: {exc}") from None
            got += len(out)
            parts.append(out)
            if got > size:
                raise ValueError("object data is longer than its header says")
            pending = d.unconsumed_tail
    finally:
        view.release()
    if got != size:
        raise ValueError(f"object inflated to {got} bytes, expected {size}")
    return b"".join(parts), pos - len(d.unused_data)


def _header(pack: Any, offset: int) -> tuple[int, int, int, int | bytes | None]:
    """(type, where its zlib stream starts, inflated size, base) of the entry at `offset`."""
    end = len(pack)
    if not 0 <= offset < end:
        raise ValueError("pack offset out of range")
    pos = offset
    c = pack[pos]
    pos += 1
    type_num = (c >> 4) & 7
    size = c & 0x0F
    shift = 4
    while c & 0x80:
        if pos >= end or shift > 56:
            raise ValueError("malformed pack entry header")
        c = pack[pos]
        pos += 1
        size |= (c & 0x7F) << shift
        shift += 7
    base: int | bytes | None = None
    if type_num == _OFS_DELTA:
        if pos >= end:
            raise ValueError("malformed pack entry header")
        c = pack[pos]
        pos += 1
        back = c & 0x7F
        while c & 0x80:
            if pos >= end or back >= 1 << 56:
                raise ValueError("malformed pack entry header")
            c = pack[pos]
            pos += 1
            back = ((back + 1) << 7) | (c & 0x7F)
        if not 0 < back <= offset:
            raise ValueError("delta base offset out of range")
        base = offset - back
    elif type_num == _REF_DELTA:
        if pos + 20 > end:
            raise ValueError("malformed pack entry header")
        base = bytes(pack[pos : pos + 20])
        pos += 20
    elif not 1 <= type_num <= 4:
        raise ValueError(f"unknown pack entry type {type_num}")
    return type_num, pos, size, base


def _inflate(pack: Any, pos: int, size: int) -> bytes:
    """Exactly `size` bytes inflated from the zlib stream at `pos`."""
    if size == 0:
        return b""
    d = zlib.decompressobj()
    view = memoryview(pack)
    try:
        # Deflate never grows data by more than ~0.1% plus a few bytes per block; steps keep
        # zlib's unconsumed_tail (a copy) small.
        step = size + (size >> 9) + 64
        parts = []
        got = 0
        tail = b""
        while got < size and not d.eof:
            chunk = bytes(tail) + view[pos : pos + step] if tail else view[pos : pos + step]
            if not chunk:
                break
            pos += step
            try:
                out = d.decompress(chunk, size - got)
            except zlib.error as exc:
                raise ValueError(f"damaged object data: {exc}") from None
            tail = d.unconsumed_tail
            parts.append(out)
            got += len(out)
            if pos >= len(view) and not tail:
                break
    finally:
        view.release()
    result = parts[0] if len(parts) == 1 else b"".join(parts)
    if len(result) != size:
        raise ValueError(f"object inflated to {len(result)} bytes, expected {size}")
    return result
