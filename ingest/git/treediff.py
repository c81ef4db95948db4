"""Which paths differ between two trees, as git's tree diff finds them (reads trees only).

Why: dulwich's `tree_changes` builds an object per entry; here the compiled `kernels.tree_diff`
walks the two sorted raw bodies side by side, builds values only for the entries that differ
and recursion enters only the subtrees whose sha changed.
"""

from __future__ import annotations

import binascii
import stat
from collections.abc import Iterator
from typing import Any

from dulwich.errors import ObjectFormatException
from dulwich.objects import parse_tree

from metre import kernels
from metre.ingest.git.errors import RepositoryError
from metre.ingest.git.objects import Entry, Reader, hex_name

__all__ = ["Change", "tree_changes"]

Change = tuple[bytes, Entry | None, Entry | None]
_S_IFMT, _S_IFDIR = 0o170000, stat.S_IFDIR


def tree_changes(
    rd: Reader, old: bytes | None, new: bytes | None, prefix: bytes = b""
) -> Iterator[Change]:
    """(path, old entry, new entry) for every non-tree path whose mode or sha differs, in
    path order; `old` and `new` are binary tree names (None: the empty tree)."""
    old_raw = rd.tree(old) if old else b""
    new_raw = rd.tree(new) if new else b""
    try:
        diff = kernels.tree_diff(old_raw, new_raw, _SHA_LEN)
    except ValueError:
        diff = _unordered_diff(old, old_raw, new, new_raw)
    for name, om, osha, nm, nsha in diff:
        old_dir = om is not None and om & _S_IFMT == _S_IFDIR
        new_dir = nm is not None and nm & _S_IFMT == _S_IFDIR
        path = prefix + name
        if old_dir or new_dir:
            # a tree on either side: recurse; a file on the other side is its own change
            yield from tree_changes(
                rd, osha if old_dir else None, nsha if new_dir else None, path + b"/"
            )
            if old_dir:
                om = None
            if new_dir:
                nm = None
            if om is None and nm is None:
                continue
        o = Entry(om, osha) if om is not None and osha is not None else None
        n = Entry(nm, nsha) if nm is not None and nsha is not None else None
        yield path, o, n


_SHA_LEN = 20


def _unordered_diff(
    old: bytes | None, old_raw: bytes, new: bytes | None, new_raw: bytes
) -> list[tuple[bytes, int | None, bytes | None, int | None, bytes | None]]:
    """`kernels.tree_diff` for trees whose entries are out of git's order (written by a
    broken tool), by name; a file and a directory at one name are one entry here."""
    sides: dict[bytes, list[Any]] = {}
    for i, (sha, raw) in enumerate(((old, old_raw), (new, new_raw))):
        try:
            items = parse_tree(raw, _SHA_LEN) if raw else []
        except (ValueError, TypeError, ObjectFormatException) as exc:
            which = hex_name(sha).decode() if sha else "?"
            raise RepositoryError(f"tree {which} is corrupt: {exc}") from None
        for name, mode, hex_sha in items:
            side = sides.setdefault(name, [None, None, None, None])
            side[2 * i : 2 * i + 2] = [mode, binascii.unhexlify(hex_sha)]
    return sorted(
        (name, om, osha, nm, nsha)
        for name, (om, osha, nm, nsha) in sides.items()
        if om != nm or osha != nsha
    )
