"""Direct reads of objects from a repository's pack files (I/O: reads files; no writes).

Why: per object, dulwich's layered `object_store.get_raw` runs several layers of Python (a
multi-pack-index `stat` per lookup, a pack index bisect that calls back into Python for every
step, an object cache), which cost more than the decompression itself (docs/architecture.md,
"Ingest: why it is shaped this way"; `bench/ingest.py` measures the whole). A
backfill reads every tree and blob of the history once or twice, so that overhead was most of
the poller's time. `PackReader` maps each version-2 pack index once, finds an object and
inflates its entry with the compiled `kernels.pack_find` and `kernels.pack_entry` (one C call
each) and resolves deltas with dulwich's compiled `apply_delta`, keeping recently resolved
objects (delta bases, and the blob a next commit diffs against) in a cache bounded in bytes,
one per process (`_RESOLVED`): the next poll of the same repository starts from what the
previous one resolved.

The mappings outlive the reader: a poller reads the same repositories again at every poll, and
mapping a pack afresh costs a page fault for each page of its index and data that a poll
touches (on a long history's pack, a large share of what its reads cost). `_MAPPED` keeps the
most recently used packs of the process mapped, keyed by the files' identity (device, inode,
size, modification time): a pack replaced or rewritten is mapped again, and one held mapped
cannot have its inode reused.

Anything it does not understand (a version-1 index, loose objects, an object outside every
pack it mapped, a pack that changed) is read through dulwich as before: `get_raw` returns None
and the caller falls back.
"""

from __future__ import annotations

import binascii
import contextlib
import itertools
import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from dulwich.pack import apply_delta

from metre import kernels

__all__ = ["PackReader", "forget_gone_packs", "forget_resolved"]

_OFS_DELTA, _REF_DELTA = 6, 7
_CACHE_BYTES = 64 * 1024 * 1024
_CACHE_ONE = 8 * 1024 * 1024
"""Objects larger than this are never cached (a huge blob is read once per diff side)."""
_TRIM_BYTES = 64 * 1024 * 1024
"""After reading about this much of the packs (a page at least per object), their mapped pages
are dropped from the process (`madvise(MADV_DONTNEED)`; they stay in the kernel's page cache).
File-backed and reclaimable, they are not a leak, but they count in the RSS: a backfill touches
the whole pack, so without this a 275 MB pack adds 275 MB to the peak RSS."""
_PAGE = mmap.PAGESIZE
_MAPPED_PACKS = 64
"""Packs the process keeps mapped between readers (a mirror holds at most
`metre.ingest.localfetch.MAX_PACKS` before they are merged)."""

_Identity = tuple[int, int, int, int]
_serials = itertools.count()


def _identity(f: Any) -> _Identity:
    st = os.fstat(f.fileno())
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class _Pack:
    """One pack and its version-2 index, memory-mapped (closed with its last reference:
    readers of several threads may share it)."""

    def __init__(self, index: mmap.mmap, data: mmap.mmap, path: Path) -> None:
        self.serial = next(_serials)
        """Names this mapping in `_RESOLVED` (never reused, unlike an inode)."""
        self.index = index
        self.data = data
        self.path = path
        if self.index[:8] != b"\xfftOc\x00\x00\x00\x02" or self.data[:4] != b"PACK":
            raise ValueError("not a version-2 pack index")

    def trim(self) -> None:
        """Drop the pack's mapped pages from this process (re-read from the page cache)."""
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if advice is not None:
            with contextlib.suppress(OSError):
                self.data.madvise(advice)


class _MappedPacks:
    """The packs this process keeps mapped, most recently used last (thread-safe)."""

    def __init__(self) -> None:
        self._packs: OrderedDict[tuple[_Identity, _Identity], _Pack] = OrderedDict()
        self._lock = threading.Lock()
        self.touched = 0
        """Bytes of packs read since their pages were last dropped (`_TRIM_BYTES`)."""

    def open(self, idx_path: Path, pack_path: Path) -> _Pack:
        """The pack at these paths, mapped now or by an earlier reader of the same files."""
        with open(idx_path, "rb") as fi, open(pack_path, "rb") as fp:
            key = (_identity(fi), _identity(fp))
            with self._lock:
                hit = self._packs.get(key)
                if hit is not None:
                    self._packs.move_to_end(key)
                    return hit
            index = mmap.mmap(fi.fileno(), 0, access=mmap.ACCESS_READ)
            data = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
        pack = _Pack(index, data, pack_path)
        with self._lock:
            self._packs[key] = pack
            while len(self._packs) > _MAPPED_PACKS:
                self._packs.popitem(last=False)
        return pack

    def forget_missing(self, pack_dir: Path, present: list[Path]) -> None:
        """Drop the mappings of packs of `pack_dir` that are gone from it (merged away or
        repacked): a deleted file held mapped keeps its disk space."""
        self._drop(lambda p: p.path.parent == pack_dir and p.path not in present)

    def forget_gone(self) -> int:
        """Drop the mappings of packs whose file is gone (a removed repository's mirror, which
        no reader of its directory will open again to notice); returns how many."""
        return self._drop(lambda p: not p.path.exists())

    def _drop(self, gone: Callable[[_Pack], bool]) -> int:
        with self._lock:
            keys = [k for k, p in self._packs.items() if gone(p)]
            for k in keys:
                del self._packs[k]
            return len(keys)

    def read(self, size: int, packs: list[_Pack]) -> None:
        """Count `size` bytes read; past `_TRIM_BYTES`, drop the pages of every mapped pack."""
        with self._lock:
            self.touched += size
            if self.touched <= _TRIM_BYTES:
                return
            self.touched = 0
            mapped = {id(p): p for p in [*self._packs.values(), *packs]}
            for pack in mapped.values():
                pack.trim()

    def clear(self) -> None:
        with self._lock:
            self._packs.clear()


_MAPPED = _MappedPacks()


class _ResolvedObjects:
    """Objects resolved from their pack entries (delta bases, whole objects), by pack mapping
    and offset, least recently used dropped first; shared by the process's readers, so a poll
    finds what the previous poll of the same repository resolved (the trees and blobs at the
    previous head, which the first new commits diff against) instead of walking their delta
    chains again. Thread-safe."""

    def __init__(self) -> None:
        self._objects: OrderedDict[tuple[int, int], tuple[int, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> tuple[int, bytes] | None:
        with self._lock:
            hit = self._objects.get(key)
            if hit is not None:
                self._objects.move_to_end(key)
            return hit

    def put(self, key: tuple[int, int], value: tuple[int, bytes]) -> None:
        size = len(value[1])
        if size > _CACHE_ONE:
            return
        with self._lock:
            old = self._objects.pop(key, None)
            if old is not None:
                self._bytes -= len(old[1])
            self._objects[key] = value
            self._bytes += size
            while self._bytes > _CACHE_BYTES:
                _, (_, dropped) = self._objects.popitem(last=False)
                self._bytes -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._objects.clear()
            self._bytes = 0


_RESOLVED = _ResolvedObjects()


def forget_gone_packs() -> int:
    """Unmap every pack whose file was deleted, so that its disk space is freed now rather than
    when 64 other packs have pushed it out; returns how many. At most 64 `stat` calls."""
    return _MAPPED.forget_gone()


def forget_resolved() -> None:
    """Drop every object the process resolved (a benchmark's cold start; never needed for
    correctness: the cache is keyed by mapping, and a pack's content never changes)."""
    _RESOLVED.clear()


class PackReader:
    """Raw objects by hex sha from the packs of one object store (thread-safe: one lock)."""

    def __init__(self, store: Any) -> None:
        self._packs: list[_Pack] = []
        self._touched = 0  # bytes read, not yet counted in `_MAPPED`
        self._lock = threading.Lock()
        pack_dir = Path(store.path) / "pack" if hasattr(store, "path") else None
        if pack_dir is None or not pack_dir.is_dir():
            return
        indexes = sorted(pack_dir.glob("pack-*.idx"))
        _MAPPED.forget_missing(pack_dir, [idx.with_suffix(".pack") for idx in indexes])
        for idx in indexes:
            try:
                self._packs.append(_MAPPED.open(idx, idx.with_suffix(".pack")))
            except (OSError, ValueError):
                continue  # dulwich reads it (or reports it broken)

    def close(self) -> None:
        """Forget the packs (their mappings stay in `_MAPPED` for the next reader)."""
        self._packs = []

    def has_binary(self, sha: bytes) -> bool:
        """Whether a mapped pack holds the object named `sha` (binary), found by the index
        alone (nothing is inflated). False says only "not in a mapped pack"."""
        find = kernels.pack_find
        return any(find(pack.index, sha) >= 0 for pack in self._packs)

    @property
    def packs(self) -> int:
        """How many packs are mapped."""
        return len(self._packs)

    def get_raw(self, hex_sha: bytes) -> tuple[int, bytes] | None:
        """(type number, content) of the object, or None when it is not in a mapped pack.

        Raises zlib.error, ValueError or IndexError when a pack is damaged.
        """
        try:
            sha = binascii.unhexlify(hex_sha)
        except (binascii.Error, ValueError):
            return None
        return self.get_raw_binary(sha)

    def get_raw_binary(self, sha: bytes) -> tuple[int, bytes] | None:
        """`get_raw` by binary name (as tree entries hold it: no hex round trip)."""
        with self._lock:
            found = self._find(sha)
            if self._touched > _TRIM_BYTES // 16:
                _MAPPED.read(self._touched, self._packs)
                self._touched = 0
            return found

    def _find(self, sha: bytes) -> tuple[int, bytes] | None:
        find = kernels.pack_find
        for pack in self._packs:
            offset = find(pack.index, sha)
            if offset < 0:
                continue
            # resolve: walk offset deltas down to a cached or whole object, then apply them
            cache = _RESOLVED
            serial = pack.serial
            hit = cache.get((serial, offset))
            if hit is not None:
                return hit
            chain: list[tuple[int, bytes]] = []  # (offset, delta) from the object to its base
            entry = kernels.pack_entry
            while True:
                type_num, data, ref = entry(pack.data, offset)
                self._touched += len(data) + _PAGE
                if type_num == _OFS_DELTA:
                    chain.append((offset, data))
                    offset = cast(int, ref)
                    hit = cache.get((serial, offset))
                    if hit is not None:
                        type_num, data = hit
                        break
                elif type_num == _REF_DELTA:
                    assert isinstance(ref, bytes)
                    found = self._find(ref)
                    if found is None:
                        raise ValueError("a delta base is missing (thin pack?)")
                    chain.append((offset, data))
                    type_num, data = found
                    break
                else:
                    cache.put((serial, offset), (type_num, data))
                    break
            for off, delta in reversed(chain):
                data = b"".join(apply_delta(data, delta))
                cache.put((serial, off), (type_num, data))
            return type_num, data
        return None
