"""Fetching from a repository on this machine in proportion to what is new (I/O, blocking).

`copy_new` walks from the source's new tips down to objects the mirror already holds and
writes what it found as one pack of whole objects (`metre.ingest.packwrite`), each checked against
its name. dulwich's local fetch instead builds a pack with a delta search over the source's
packs, inflating every object of the history on every poll, so one new commit cost as much as
the whole history (the README's Performance section, "Freshness", has the figures); this walk
reads the handful of new objects.

`clone_packs` is the first fetch: the source's packs are hard-linked (or copied) as
`git clone --local` does, their checksums verified, its loose objects packed and their
references checked. The closure of the packed history is not walked here: the backfill that
follows reads every commit, tree and blob it counts, and reports a missing or damaged one as
a `RepositoryError` naming it (git's own local clone does not check connectivity either).

The walk stops at any commit or tree the mirror holds: every fetch adds whole closures, so an
object present is complete below it. For the same reason a commit's tree is walked as a diff
against its first parent's tree: what the commit did not change is reachable from the parent,
which the mirror holds or this fetch copies, so a wide tree costs its changed entries only.
"""

from __future__ import annotations

import binascii
import gc
import hashlib
import os
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from dulwich.objects import ObjectID, parse_tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from metre import kernels
from metre.ingest.fetcherrors import FETCH_ERRORS, describe
from metre.ingest.git.commit import header_fields
from metre.ingest.git.errors import RepositoryError
from metre.ingest.git.rawread import MalformedObject, read_loose
from metre.ingest.packs import PackReader
from metre.ingest.packwrite import ObjectCorrupt, PackWriter, copy_file
from metre.ingest.refstore import read_refs

__all__ = [
    "MAX_PACKS",
    "MirrorObjects",
    "clone_packs",
    "consolidate",
    "copy_new",
    "fetch_local",
    "verify_pack",
]

_COMMIT, _TREE, _BLOB, _TAG = 1, 2, 3, 4
_GITLINK = 0o160000
_DIR = 0o040000
_FMT = 0o170000


CHECK_EVERY = 1024
"""Objects copied between two looks at the fetch's deadline (a look is a flag read)."""


def _no_deadline() -> None:
    """The default `check`: no deadline."""


def _corrupt(what: str) -> RepositoryError:
    return RepositoryError(f"the repository is corrupt or unreadable ({what})")


def _bad_pack(what: str) -> RepositoryError:
    """A pack that fails a check (worded as before: a ValueError, then which pack and why)."""
    return RepositoryError(f"the repository is corrupt or unreadable (ValueError): {what}")


class MirrorObjects:
    """Membership in one object store by name: its packs' indexes (mapped, searched by the
    compiled `pack_find`), then its loose objects. Nothing is inflated."""

    def __init__(self, store: Any) -> None:
        self.path = str(store.path)
        self._packs = PackReader(store)

    def close(self) -> None:
        self._packs.close()

    def has(self, hex_sha: bytes) -> bool:
        try:
            binary = binascii.unhexlify(hex_sha)
        except (binascii.Error, ValueError):
            return False
        if self._packs.has_binary(binary):
            return True
        name = hex_sha.decode("ascii")
        return os.path.isfile(os.path.join(self.path, name[:2], name[2:]))


class _Source:
    """Raw reads of a source repository's objects: packs through the compiled reader, loose
    objects inflated here (never parsed: dulwich refuses dates git accepts)."""

    def __init__(self, store: Any) -> None:
        self.path = str(store.path)
        self.store = store
        self._packs = PackReader(store)

    def close(self) -> None:
        self._packs.close()

    def read(self, hex_sha: bytes) -> tuple[int, bytes]:
        name = hex_sha.decode("ascii")
        try:
            found = self._packs.get_raw(hex_sha)
            if found is not None:
                return found
            return read_loose(os.path.join(self.path, name[:2], name[2:]), name)
        except FileNotFoundError:
            pass
        except MalformedObject as exc:
            raise _corrupt(str(exc)) from None
        except (ValueError, IndexError, zlib.error, OSError) as exc:
            raise _corrupt(f"object {name} cannot be read: {type(exc).__name__}") from None
        try:  # packs the reader did not map (version-1 index, alternates): through dulwich
            type_num, data = self.store.get_raw(hex_sha)
        except KeyError:
            raise _corrupt(f"object {name} is missing") from None
        except Exception as exc:  # noqa: BLE001 (dulwich's read errors have no common base)
            raise _corrupt(f"object {name} cannot be read: {type(exc).__name__}") from None
        return int(type_num), bytes(data)


def _references(type_num: int, data: bytes) -> list[bytes]:
    """The names (hex) an object points at: a commit's tree and parents, a tag's object, a
    tree's entries (not gitlinks: a submodule's commit is not an object of this repository)."""
    if type_num in (_COMMIT, _TAG):
        return [v for k, _, v in header_fields(data) if k in (b"tree", b"parent", b"object")]
    if type_num == _TREE:
        return [sha for _, mode, sha in parse_tree(data, 20) if mode != _GITLINK]
    return []


def copy_new(
    src_store: Any,
    mirror: MirrorObjects,
    pack_dir: Path,
    wants: Iterable[bytes],
    check: Callable[[], None] = _no_deadline,
) -> int:
    """Copy every object reachable from `wants` (hex names) that the mirror lacks into one new
    pack in `pack_dir`; returns how many. Raises `RepositoryError` naming the first object
    that is missing, unreadable or does not hash to its name (nothing is landed then), and
    whatever `check` raises (the fetch's deadline, asked every `CHECK_EVERY` objects).

    A commit's tree is walked as a diff against its first parent's (`_changed_entries`):
    an entry equal to the parent's at the same path is reachable from the parent, which this
    fetch copies too or the mirror holds whole, so only what the commit changed is looked up
    (a wide tree with one changed file costs one lookup, not one per entry)."""
    source = _Source(src_store)
    try:
        with PackWriter(pack_dir) as writer:
            todo: list[tuple[bytes, bytes | None]] = [(sha, None) for sha in wants]
            seen: set[bytes] = set()
            while todo:
                sha, base = todo.pop()
                if sha in seen:
                    continue
                seen.add(sha)
                if len(seen) % CHECK_EVERY == 0:
                    check()
                if mirror.has(sha):
                    continue
                type_num, data = source.read(sha)
                try:
                    writer.add(binascii.unhexlify(sha), type_num, data)
                except ObjectCorrupt as exc:
                    raise _corrupt(str(exc)) from None
                if type_num == _COMMIT:
                    todo.extend(_commit_references(source, data, seen))
                elif type_num == _TREE and base is not None:
                    todo.extend(_changed_entries(source, base, data, seen))
                else:
                    todo.extend((s, None) for s in _references(type_num, data) if s not in seen)
            writer.finish()
            return len(writer)
    finally:
        source.close()


def _commit_references(
    source: _Source, data: bytes, seen: set[bytes]
) -> list[tuple[bytes, bytes | None]]:
    """A commit's parents, then its tree paired with its first parent's tree (the tree is
    popped first: diffed while the parent's tree is fresh in the read cache)."""
    fields = header_fields(data)
    parents = [v for k, _, v in fields if k == b"parent"]
    trees = [v for k, _, v in fields if k == b"tree"]
    base = None
    if parents and len(trees) == 1:
        kind, parent = source.read(parents[0])
        parent_trees = [v for k, _, v in header_fields(parent) if k == b"tree"]
        if kind == _COMMIT and len(parent_trees) == 1:
            base = parent_trees[0]
    out: list[tuple[bytes, bytes | None]] = [(p, None) for p in parents if p not in seen]
    out += [(t, base) for t in trees if t not in seen]
    return out


def _changed_entries(
    source: _Source, base: bytes, data: bytes, seen: set[bytes]
) -> list[tuple[bytes, bytes | None]]:
    """The entries of tree `data` that differ from tree `base` (hex; read from the source),
    subtrees paired with the base's subtree at the same name. Trees out of git's order (or
    a base that is no tree) are walked whole."""
    kind, base_data = source.read(base)
    try:
        if kind != _TREE:
            raise ValueError("not a tree")
        diff = kernels.tree_diff(base_data, data, 20)
    except ValueError:
        return [(s, None) for s in _references(_TREE, data) if s not in seen]
    out: list[tuple[bytes, bytes | None]] = []
    for _, om, osha, nm, nsha in diff:
        if nm is None or nsha is None or nm == _GITLINK:
            continue
        sha = binascii.hexlify(nsha)
        if sha in seen:
            continue
        sub = None
        if nm & _FMT == _DIR and om is not None and om & _FMT == _DIR and osha is not None:
            sub = binascii.hexlify(osha)
        out.append((sha, sub))
    return out


def verify_pack(pack: Path) -> None:
    """A pack ends with the SHA-1 of everything before it, and its index ends with that
    checksum and its own: a truncated or altered copy fails here (hashing runs at about
    1 GB/s, far below the cost of reading the objects). Raises `RepositoryError`."""
    digest = hashlib.sha1(usedforsecurity=False)
    size = pack.stat().st_size
    if size < 32:
        raise _bad_pack(f"pack {pack.name} is truncated")
    with pack.open("rb") as f:
        if f.read(4) != b"PACK":
            raise _bad_pack(f"{pack.name} is not a pack")
        digest.update(b"PACK")
        left = size - 24
        while left:
            chunk = f.read(min(left, 1 << 22))
            if not chunk:
                raise _bad_pack(f"pack {pack.name} is truncated")
            digest.update(chunk)
            left -= len(chunk)
        checksum = f.read(20)
    if checksum != digest.digest():
        raise _bad_pack(f"pack {pack.name} fails its checksum (corrupt or truncated)")
    index = pack.with_suffix(".idx").read_bytes()
    if len(index) < 40 or index[-40:-20] != checksum:
        raise _bad_pack(f"the index of pack {pack.name} does not belong to it")
    if hashlib.sha1(index[:-20], usedforsecurity=False).digest() != index[-20:]:
        raise _bad_pack(f"the index of pack {pack.name} fails its checksum")


def clone_packs(
    src_store: Any,
    target_store: Any,
    wants: Sequence[bytes],
    check: Callable[[], None] = _no_deadline,
) -> bool:
    """First fetch from a path: link or copy the source's packs into the empty mirror, verify
    them, pack its loose objects (checking what they reference is present) and check the
    wanted tips are there. False, doing nothing, when the mirror already holds objects or the
    source borrows objects (alternates). Only regular files are taken (no symlinks). Raises
    `RepositoryError` (and what `check`, the deadline, raises between packs); the caller
    empties the mirror again when anything fails."""
    source, dest = Path(src_store.path), Path(target_store.path)
    if (source / "info" / "alternates").exists() or _holds_objects(dest):
        return False
    pack_dir = source / "pack"
    names = {e.name for e in os.scandir(pack_dir) if e.is_file(follow_symlinks=False)}
    for name in sorted(names):
        base = name.removesuffix(".pack")
        if name.endswith(".pack") and f"{base}.idx" in names:
            check()
            copy_file(pack_dir / name, dest / "pack" / name)  # the pack, then its index
            copy_file(pack_dir / f"{base}.idx", dest / "pack" / f"{base}.idx")
            verify_pack(dest / "pack" / name)
    loose = [
        (fan.name + e.name).encode("ascii")
        for fan in os.scandir(source)
        if len(fan.name) == 2 and fan.is_dir(follow_symlinks=False)
        for e in os.scandir(fan.path)
        if len(e.name) == 38 and e.is_file(follow_symlinks=False)
    ]
    mirror = MirrorObjects(target_store)
    try:
        if loose:
            _pack_loose(source, mirror, dest / "pack", loose)
        packed_loose = set(loose)
        for sha in wants:
            if sha not in packed_loose and not mirror.has(sha):
                raise _corrupt(f"object {sha.decode()} is missing")
    finally:
        mirror.close()
    return True


def _pack_loose(source: Path, packed: MirrorObjects, pack_dir: Path, loose: list[bytes]) -> None:
    """The source's loose objects as one pack (the mirror is read through packs), each checked
    against its name, and every object they reference present among them or in the packs."""
    names = set(loose)
    refs: set[bytes] = set()
    with PackWriter(pack_dir) as writer:
        for sha in loose:
            name = sha.decode("ascii")
            try:
                type_num, data = read_loose(str(source / name[:2] / name[2:]), name)
                writer.add(binascii.unhexlify(sha), type_num, data)
            except MalformedObject as exc:
                raise _corrupt(str(exc)) from None
            except (OSError, zlib.error) as exc:
                raise _corrupt(f"object {name} cannot be read: {type(exc).__name__}") from None
            except ObjectCorrupt as exc:
                raise _corrupt(str(exc)) from None
            refs.update(_references(type_num, data))
        for sha in sorted(refs - names):
            if not packed.has(sha):
                raise _corrupt(f"object {sha.decode()} is missing")
        writer.finish()


def _holds_objects(objects: Path) -> bool:
    """Whether an objects directory holds any pack or loose object."""
    if any(p.suffix == ".pack" for p in (objects / "pack").iterdir()):
        return True
    return any(len(d.name) == 2 and any(d.iterdir()) for d in objects.iterdir() if d.is_dir())


MAX_PACKS = 32
"""A mirror holding more packs than this has its small ones merged (`consolidate`)."""
SMALL_PACK = 16 * 1024 * 1024


def consolidate(store: Any, max_packs: int | None = None, small: int = SMALL_PACK) -> int:
    """Merge the mirror's small packs into one when it holds more than `max_packs`; returns how
    many were merged (0: nothing to do). Every poll that brings something adds a pack, and
    every object lookup asks each pack in turn: without this, a mirror polled for a year
    would answer a lookup after thousands of index searches. The objects are copied whole and
    checked against their names; the old packs are removed after the new one landed (index
    first: a pack without an index is never read). Blocking; the poller holds the lease."""
    pack_dir = Path(store.path) / "pack"
    packs = sorted(pack_dir.glob("pack-*.pack"))
    if len(packs) <= (MAX_PACKS if max_packs is None else max_packs):
        return 0
    merge = [
        p
        for p in packs
        if p.stat().st_size < small
        and p.with_suffix(".idx").is_file()
        and not p.with_suffix(".keep").exists()
    ]
    if len(merge) < 2:
        return 0
    reader = PackReader(store)
    try:
        with PackWriter(pack_dir) as writer:
            for pack in merge:
                index = pack.with_suffix(".idx").read_bytes()
                if index[:8] != b"\xfftOc\x00\x00\x00\x02":
                    return 0  # a version-1 index: leave it be
                count = int.from_bytes(index[8 + 4 * 255 : 8 + 4 * 256], "big")
                start = 8 + 1024
                for i in range(count):
                    name = index[start + 20 * i : start + 20 * i + 20]
                    found = reader.get_raw_binary(name)
                    if found is None:
                        raise _corrupt(f"object {name.hex()} cannot be read")
                    writer.add(name, *found)
            landed = writer.finish()
    finally:
        reader.close()
    for pack in merge:
        if pack != landed:
            pack.with_suffix(".idx").unlink(missing_ok=True)
            pack.unlink(missing_ok=True)
    return len(merge)


def fetch_local(
    path: str,
    target: Repo,
    wants: Callable[[Mapping[Ref, ObjectID], int | None], list[ObjectID]],
    check: Callable[[], None] = lambda: None,
) -> tuple[Mapping[Ref, ObjectID | None], Mapping[Ref, Ref]]:
    """Fetch from a repository on this machine: its packs linked on the first fetch, then
    only the objects the mirror lacks (`metre.ingest.localfetch`), closing the source even when its
    packs are corrupt. `check` raises `TimeoutError` once the fetch's total deadline has
    passed; that error is passed on for the clock to name. Otherwise raises `RepositoryError`
    carrying only the reason.
    (A failed read's traceback can keep a pack map referenced: it is dropped and collected
    before the source is closed.)
    """
    src = Repo(path)
    try:
        try:
            raw_refs, raw_symrefs = read_refs(Path(src.controldir()), Path(src.commondir()))
            refs = cast(dict[Ref, ObjectID], raw_refs)  # NewTypes of bytes: no copy needed
            symrefs = cast(dict[Ref, Ref], raw_symrefs)
            wanted = wants(refs, None)
            if wanted:
                try:
                    cloned = clone_packs(src.object_store, target.object_store, wanted, check)
                except BaseException:
                    _drop_packs(target)  # the mirror stays empty: the next poll starts afresh
                    raise
                if not cloned:
                    mirror = MirrorObjects(target.object_store)
                    try:
                        copy_new(
                            src.object_store,
                            mirror,
                            Path(target.object_store.pack_dir),
                            wanted,
                            check,
                        )
                    finally:
                        mirror.close()
            return refs, symrefs
        except TimeoutError:
            raise
        except FETCH_ERRORS as exc:
            failure = RepositoryError(describe(exc))
        gc.collect()
        raise failure
    finally:
        src.close()


def _drop_packs(target: Repo) -> None:
    """Remove every pack of the mirror (a failed first copy)."""
    store = target.object_store
    store.close()
    for f in Path(store.pack_dir).iterdir():
        f.unlink()
