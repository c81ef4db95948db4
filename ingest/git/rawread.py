"""Raw objects by name, never parsed (I/O: reads an object store's files).

Why not dulwich's `get_raw` alone: it parses a loose object to read it, and its commit parser
refuses identity lines git accepts (a date such as ``12x34``). Loose objects are inflated here;
packed ones come from dulwich's raw read, or first from `metre.ingest.packs`' compiled reader where
the caller holds one.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

from dulwich.errors import ApplyDeltaError, ChecksumMismatch, FileFormatException, ObjectMissing

__all__ = ["CORRUPT", "TYPE_NUMS", "MalformedObject", "raw_object", "read_loose"]

TYPE_NUMS = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}


CORRUPT: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,
    IndexError,
    AssertionError,
    zlib.error,
    ChecksumMismatch,
    ApplyDeltaError,
    FileFormatException,
    ObjectMissing,
)
"""What reading a damaged object store raises in dulwich (its errors have no common base)."""


class MalformedObject(ValueError):
    """A loose object whose header is not git's ``<type> <size>\\0`` for its content."""


def read_loose(path: str, name: str) -> tuple[int, bytes]:
    """(type number, content) of the loose object file at `path` (`name`: its hex name, for
    the message). Raises FileNotFoundError, zlib.error or `MalformedObject`."""
    with open(path, "rb") as f:
        raw = zlib.decompress(f.read())
    head, _, body = raw.partition(b"\0")
    kind, _, size = head.partition(b" ")
    if kind not in TYPE_NUMS or not size.isdigit() or int(size) != len(body):
        raise MalformedObject(f"object {name} has a malformed header")
    return TYPE_NUMS[kind], body


def raw_object(store: Any, sha: bytes) -> tuple[int, bytes]:
    """(type number, raw content) of object `sha` (hex) of a dulwich object store: a loose
    object inflated here, else dulwich's raw read of the packs (KeyError: absent). Blocking."""
    name = sha.decode("ascii")
    try:
        return read_loose(os.path.join(store.path, name[:2], name[2:]), name)
    except FileNotFoundError:
        type_num, raw = store.get_raw(sha)  # packed: read raw, not parsed
        return int(type_num), bytes(raw)
