"""The differing entries of two git tree objects (pure; the spec of kernels/_treediff.c).

A tree object's body is a sequence of entries ``<mode> <name>\\0<sha>``: the mode in octal
ASCII digits, the name any bytes but NUL, the sha `sha_len` raw bytes (20 for SHA-1). git
writes entries sorted by name, where a directory's name (mode 040000) sorts as if followed by
``/``; so both trees can be walked side by side once, and nothing is built for the entries that
did not change (most of them: a root tree of 7,500 entries usually differs in one).

`tree_diff(old, new)` returns ``(name, old_mode, old_sha, new_mode, new_sha)`` for each name
whose mode or sha differs, in that sort order; an absent side is ``None, None``. A file and a
directory at the same name sort apart (the directory as ``name/``), so a file <-> directory
change comes out as two entries, a delete and an add, as git's numstat counts it. A gitlink
(mode 160000) sorts as a file. Modes are compared as numbers (no canonicalization).

Raises ValueError when a body is malformed, or when its entries are not strictly in that order
(a tree written by a broken tool, or a repeated name): a side-by-side walk would pair the
wrong entries, so the caller falls back to a diff that does not assume the order.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["TreeDiff", "tree_diff"]

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_MAX_MODE_DIGITS = 7
"""git writes 5 or 6 digits; a longer mode is malformed (and would overflow a C int)."""

TreeDiff = tuple[bytes, int | None, bytes | None, int | None, bytes | None]
"""(name, old mode, old sha, new mode, new sha); an absent side is None, None."""


def _entries(body: bytes, sha_len: int) -> Iterator[tuple[bytes, bytes, int, bytes]]:
    """(sort key, name, mode, sha) of each entry, checking the format and the order."""
    pos = 0
    end = len(body)
    last: bytes | None = None
    while pos < end:
        space = body.find(b" ", pos)
        if space <= pos:
            raise ValueError("malformed tree entry: no mode")
        digits = body[pos:space]
        if len(digits) > _MAX_MODE_DIGITS or any(c not in b"01234567" for c in digits):
            raise ValueError("malformed tree entry: mode is not a short octal number")
        mode = int(digits, 8)
        nul = body.find(b"\0", space + 1)
        if nul < 0 or nul + 1 + sha_len > end:
            raise ValueError("malformed tree entry: truncated")
        name = body[space + 1 : nul]
        sha = body[nul + 1 : nul + 1 + sha_len]
        key = name + b"/" if mode & _S_IFMT == _S_IFDIR else name
        if last is not None and key <= last:
            raise ValueError("tree entries out of order")
        last = key
        yield key, name, mode, sha
        pos = nul + 1 + sha_len


def tree_diff(old: bytes, new: bytes, sha_len: int = 20) -> list[TreeDiff]:
    """Entries whose mode or sha differ between tree bodies `old` and `new` (see the module)."""
    if sha_len <= 0:
        raise ValueError("sha_len must be positive")
    out: list[TreeDiff] = []
    a = _entries(old, sha_len)
    b = _entries(new, sha_len)
    x = next(a, None)
    y = next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            assert x is not None
            out.append((x[1], x[2], x[3], None, None))
            x = next(a, None)
        elif x is None or y[0] < x[0]:
            out.append((y[1], None, None, y[2], y[3]))
            y = next(b, None)
        else:
            if x[2] != y[2] or x[3] != y[3]:
                out.append((x[1], x[2], x[3], y[2], y[3]))
            x = next(a, None)
            y = next(b, None)
    return out
