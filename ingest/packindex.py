"""Indexing a pack received from a remote with the compiled pack kernel (I/O: one pack file).

dulwich indexes a received pack in Python, object by object, and (through `add_pack_data`)
parses every object, refusing the whole pack for one commit date it cannot parse. Here each
entry is read in sequence with `kernels.pack_object` (header, inflation and where the entry
ends, in one C call), whole objects are named by hashing them, and deltas are resolved from
their bases down (dulwich's compiled `apply_delta`), each delta chain held only while it is
walked, as git's index-pack does. Nothing is parsed; a malformed entry is reported with its
offset, a missing base by its name.

A thin pack (deltas against objects the mirror already has, as servers send to a client
that says it has them) is completed as git's ``index-pack --fix-thin`` does: each outside
base is read from the mirror and appended whole, so the landed pack stands alone.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from dulwich.pack import apply_delta

from metre import kernels
from metre.ingest.packwrite import entry_bytes, object_name, write_index

__all__ = ["PackRefused", "land_pack"]

_OFS_DELTA, _REF_DELTA = 6, 7


class PackRefused(ValueError):
    """A received pack that cannot be indexed: the message says which object and why."""


Outside = Callable[[bytes], tuple[int, bytes] | None]
"""(type, content) of an object the mirror holds, by binary name; None when it does not."""


def _index(
    data: mmap.mmap, outside: Outside
) -> tuple[list[tuple[bytes, int, int]], bytes, list[tuple[int, bytes]]]:
    """(name, crc32, offset) of every object of the pack in `data`, its checksum, and the
    outside bases its deltas need (type, content), to append."""
    if len(data) < 32 or data[:4] != b"PACK" or data[4:8] not in (b"\0\0\0\2", b"\0\0\0\3"):
        raise PackRefused("the server sent something that is not a pack")
    count = int.from_bytes(data[8:12], "big")
    checksum = bytes(data[-20:])
    digest = hashlib.sha1(memoryview(data)[:-20], usedforsecurity=False).digest()
    if digest != checksum:
        raise PackRefused("the received pack fails its checksum (truncated or altered)")
    end_of_objects = len(data) - 20
    read = kernels.pack_object
    names: dict[int, bytes] = {}
    crcs: dict[int, int] = {}
    by_offset: defaultdict[int, list[int]] = defaultdict(list)
    by_name: defaultdict[bytes, list[int]] = defaultdict(list)
    offset = 12
    for _ in range(count):
        if offset >= end_of_objects:
            raise PackRefused("the received pack holds fewer objects than its header says")
        try:
            type_num, body, base, end = read(data, offset)
        except ValueError as exc:
            raise PackRefused(
                f"the object at offset {offset} of the received pack is malformed: {exc}"
            ) from None
        crcs[offset] = zlib.crc32(memoryview(data)[offset:end])
        if type_num == _OFS_DELTA:
            assert isinstance(base, int)
            by_offset[base].append(offset)
        elif type_num == _REF_DELTA:
            assert isinstance(base, bytes)
            by_name[base].append(offset)
        else:
            names[offset] = object_name(type_num, body)
        offset = end
    if offset != end_of_objects:
        raise PackRefused("the received pack has data after its last object")

    entry = kernels.pack_entry

    def resolve(root: int, type_num: int, body: bytes) -> None:
        """Name every delta below `root` (children by offset and by name), depth first."""
        stack: list[tuple[int, bytes]] = [(root, body)]
        while stack:
            parent, parent_body = stack.pop()
            kids = by_offset.pop(parent, []) + by_name.pop(names[parent], [])
            for child in kids:
                _, delta, _ = entry(data, child)
                try:
                    child_body = b"".join(apply_delta(parent_body, delta))
                except Exception as exc:  # noqa: BLE001 (dulwich's delta errors vary)
                    why = type(exc).__name__
                    raise PackRefused(
                        f"the delta at offset {child} of the received pack does not apply: {why}"
                    ) from None
                names[child] = object_name(type_num, child_body)
                stack.append((child, child_body))

    for o in [o for o in names if o in by_offset or names[o] in by_name]:
        type_num, body, _ = entry(data, o)
        resolve(o, type_num, body)
    extra: list[tuple[int, bytes]] = []
    for base in list(by_name):  # what is left: bases outside the pack (a thin pack)
        found = outside(base)
        if found is not None:
            extra.append(found)
            names[-len(extra)] = base
            resolve(-len(extra), *found)
    if by_offset or by_name:
        missing = next(iter(by_name), None)
        what = f"base {missing.hex()}" if missing else f"base at offset {next(iter(by_offset))}"
        raise PackRefused(f"the received pack has deltas whose {what} it does not hold")
    return [(names[o], crcs[o], o) for o in names if o >= 0], checksum, extra


def land_pack(tmp: Path, pack_dir: Path, outside: Outside) -> Path | None:
    """Index the pack written at `tmp` (completing it when thin) and move it into `pack_dir`
    under its checksum (the index last: a pack without an index is never read). Returns its
    path (None for an empty transfer). Raises `PackRefused`; `tmp` is removed in every case."""
    idx_tmp = tmp.with_name(tmp.name + ".idx")
    try:
        if tmp.stat().st_size == 0:
            return None
        with open(tmp, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            entries, checksum, extra = _index(data, outside)
            count = int.from_bytes(data[8:12], "big")
        finally:
            data.close()
        if extra:
            checksum = _append(tmp, count, extra, entries)
        final = pack_dir / f"pack-{checksum.hex()}"
        write_index(idx_tmp, entries, checksum)
        os.replace(tmp, final.with_suffix(".pack"))
        os.replace(idx_tmp, final.with_suffix(".idx"))
        return final.with_suffix(".pack")
    finally:
        for leftover in (tmp, idx_tmp):
            if leftover.exists():
                leftover.unlink()


def _append(
    tmp: Path, count: int, extra: list[tuple[int, bytes]], entries: list[tuple[bytes, int, int]]
) -> bytes:
    """Append the outside bases whole to the pack at `tmp` (their index entries added to
    `entries`), fix its object count and checksum; returns the new checksum."""
    with open(tmp, "r+b") as f:
        f.seek(-20, os.SEEK_END)
        offset = f.tell()
        f.truncate()
        for type_num, body in extra:
            raw = entry_bytes(type_num, body)
            f.write(raw)
            entries.append((object_name(type_num, body), zlib.crc32(raw), offset))
            offset += len(raw)
        f.seek(8)
        f.write((count + len(extra)).to_bytes(4, "big"))
        f.seek(0)
        digest = hashlib.sha1(usedforsecurity=False)
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        checksum = digest.digest()
        f.write(checksum)
    return checksum
