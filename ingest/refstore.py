"""Reading a repository's refs and writing a mirror's, in one pass each (I/O, blocking).

dulwich's refs container validates and opens every ref one by one (and again for each symref
it resolves), which for a history with many tags was most of an idle poll's CPU
(`bench/freshness.py` reports the idle poll). Here the refs are read as git stores them (a
``packed-refs`` file, then loose ref files under ``refs/``, which override it; ``HEAD``), and a
mirror's branches and tags are written as one ``packed-refs`` file, replaced atomically, its
loose refs removed after, as ``git pack-refs`` leaves a repository. A crash between the two
leaves stale loose refs, which the next poll sees as differing from the remote and rewrites.
``HEAD`` is written the same way (a temporary file renamed over it) when the remote's default
branch changes.

Names that git would refuse (``check-ref-format``: ``..``, control characters, a component
starting with ``.`` or ending with ``.lock``, ...) are left out when read.

A poller reads the same refs every poll, and on a history with thousands of refs parsing and
validating them was a large part of a poll that brought a few commits. `RefCache` (one per
process, `CACHE`) keeps what it read: ``packed-refs`` is parsed again only when its bytes
differ, and a directory of loose refs is listed again, and its refs' stats (inode, size,
mtime) compared, only when the directory's own stat changed: git writes a ref by renaming a
lock file over it, which changes the directory. Timestamps are as coarse as the file system's
clock, so a stat taken within `RACY_SECONDS` of the mtime proves nothing (git's "racily
clean" rule): such entries are read again until their stat is older than that. What git never
does, a ref file rewritten in place, leaves the directory as it was; it is seen when the
repository is read in full, which happens every `VERIFY_AFTER` seconds regardless.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CACHE", "RefCache", "read_refs", "write_head", "write_packed_refs"]

RACY_SECONDS = 2.0
"""A stat this close to the file's mtime may miss a change made in the same clock tick."""
VERIFY_AFTER = 60.0
"""Seconds after which a repository's refs are read in full, whatever the stats say."""
CACHE_REFS = 262_144
"""Refs kept over all repositories; the least recently read repositories are dropped first."""

_SYMREF = b"ref: "
_BAD_NAME = re.compile(rb"[\x00-\x20\x7f~^:?*\[\\]|\.\.|//|@\{|/\.|\.lock(?:/|$)|^/|/$|\.$")
_MAX_SYMREF_DEPTH = 5
_SHA = re.compile(rb"[0-9a-f]{40}")


def _valid(name: bytes) -> bool:
    return name.startswith(b"refs/") and not _BAD_NAME.search(name)


def _parse_packed(data: bytes, known: Mapping[bytes, bytes] | None = None) -> dict[bytes, bytes]:
    """The refs of a ``packed-refs`` file; names already in `known` need no validation."""
    refs: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        if not line or line[:1] in (b"#", b"^"):
            continue
        sha, _, name = line.partition(b" ")
        if len(sha) == 40 and ((known is not None and name in known) or _valid(name)):
            refs[name] = sha
    return refs


Stamp = tuple[int, int, int, int]
"""(device, inode, size, mtime in ns) of a file or directory."""


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _trusted(stamp: Stamp, taken: float) -> bool:
    """A stat taken at `taken` (epoch s) proves the file unchanged since then only if the
    file's mtime was already `RACY_SECONDS` old."""
    return stamp[3] / 1e9 + RACY_SECONDS <= taken


@dataclass
class _Packed:
    stamp: Stamp
    taken: float
    data: bytes
    refs: dict[bytes, bytes]


@dataclass
class _LooseDir:
    stamp: Stamp
    taken: float
    dirs: list[str]
    refs: list[tuple[str, bytes]]
    """(path under the repository, ref name) of each file with a valid name."""


@dataclass
class _LooseFile:
    stamp: Stamp
    taken: float
    value: bytes


@dataclass
class _Entry:
    """What is known of one repository's refs."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    packed: _Packed | None = None
    dirs: dict[str, _LooseDir] = field(default_factory=dict)
    files: dict[str, _LooseFile] = field(default_factory=dict)
    dir_refs: dict[str, tuple[_LooseDir, dict[bytes, bytes], dict[str, _LooseFile]]] = field(
        default_factory=dict
    )
    """By directory: the listing, and the refs and files read under it (every one of them
    read): what an unchanged listing gives again without a look at each ref."""
    verified: float = 0.0
    generation: int = 0
    stored: dict[bytes, bytes] = field(default_factory=dict)
    last_packed: dict[bytes, bytes] | None = None
    last_loose: dict[bytes, bytes] = field(default_factory=dict)
    resolved: tuple[int, bytes, dict[bytes, bytes], dict[bytes, bytes]] | None = None
    counted: int = 0
    """What this entry adds to the cache's running total (its size when last counted)."""

    def size(self) -> int:
        return 1 + len(self.stored) + len(self.files)


class RefCache:
    """What was read of each repository's refs, checked by stat before it is used again.

    Safe to share between threads (one lock per repository; a poller fetches on a pool)."""

    def __init__(self, max_refs: int = CACHE_REFS) -> None:
        self.max_refs = max_refs
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._total = 0
        self.reads = 0
        """Files read (``packed-refs`` and loose refs): what the cache saves is visible."""

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, common: Path) -> _Entry:
        key = os.fspath(common)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            self._entries.move_to_end(key)
            return entry

    def _trim(self, common: Path, entry: _Entry) -> None:
        """Count `entry` as it is now, then drop the least recently read entries while the
        total is over the bound (a running total: a poll never sums every repository)."""
        with self._lock:
            size = entry.size()
            if self._entries.get(os.fspath(common)) is entry:  # not dropped meanwhile
                self._total += size - entry.counted
                entry.counted = size
            while self._total > self.max_refs and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._total -= dropped.counted

    def stored(self, common: Path) -> tuple[int, dict[bytes, bytes], dict[bytes, bytes], _Entry]:
        """(generation, refs under refs/ as stored, the loose ones among them, entry): the
        generation changes whenever the stored refs do. The dicts are not to be changed."""
        entry = self._entry(common)
        with entry.lock:
            now = time.time()
            if now - entry.verified >= VERIFY_AFTER:
                entry.packed, entry.dirs, entry.files, entry.dir_refs = None, {}, {}, {}
                entry.verified = now
            packed = self._read_packed(common, entry, now)
            loose = self._read_loose(common, entry, now)
            if packed is not entry.last_packed or (
                loose is not entry.last_loose and loose != entry.last_loose
            ):
                stored = dict(packed)
                stored.update(loose)
                if stored != entry.stored:
                    entry.stored = stored
                    entry.generation += 1
                entry.last_packed, entry.last_loose = packed, loose
            result = entry.generation, entry.stored, loose, entry
        self._trim(common, entry)
        return result

    def _read_packed(self, common: Path, entry: _Entry, now: float) -> dict[bytes, bytes]:
        path = common / "packed-refs"
        try:
            with open(path, "rb") as f:
                stamp = _stamp(os.fstat(f.fileno()))
                known = entry.packed
                if known is not None and known.stamp == stamp and _trusted(stamp, known.taken):
                    return known.refs
                data = f.read()
                self.reads += 1
        except FileNotFoundError:
            entry.packed = None
            return {}
        if known is not None and known.data == data:
            refs = known.refs
        else:
            refs = _parse_packed(data, known.refs if known is not None else None)
        entry.packed = _Packed(stamp, now, data, refs)
        return refs

    def _read_loose(self, common: Path, entry: _Entry, now: float) -> dict[bytes, bytes]:
        """Loose refs under refs/ (values as stored: a sha or ``ref: <name>``). A poll reads
        this for thousands of refs: string paths, names validated when a directory is listed,
        and a directory whose listing is unchanged gives what it gave before (`dir_refs`);
        when every one does, the dict returned is the previous one."""
        out: dict[bytes, bytes] = {}
        seen_dirs: dict[str, _LooseDir] = {}
        seen_files: dict[str, _LooseFile] = {}
        dir_refs: dict[str, tuple[_LooseDir, dict[bytes, bytes], dict[str, _LooseFile]]] = {}
        files = entry.files
        root = os.fspath(common) + "/"
        todo = ["refs"]
        while todo:
            rel = todo.pop()
            cached = entry.dirs.get(rel)
            listing = self._list(root, rel, cached, now)
            if listing is None:
                continue
            seen_dirs[rel] = listing
            todo += [f"{rel}/{d}" for d in listing.dirs]
            unchanged = listing is cached  # git writes a ref by renaming: the directory changes
            before = entry.dir_refs.get(rel)
            if unchanged and before is not None and before[0] is listing:
                _, refs_here, files_here = before
            else:
                refs_here, files_here = {}, {}
                for ref_rel, ref in listing.refs:
                    known = files.get(ref_rel)
                    if not (unchanged and known is not None):
                        known = self._read_file(root + ref_rel, known, now)
                    if known is not None:
                        files_here[ref_rel] = known
                        refs_here[ref] = known.value
            if len(files_here) == len(listing.refs):  # a file that failed is tried again
                dir_refs[rel] = (listing, refs_here, files_here)
            out.update(refs_here)
            seen_files.update(files_here)
        # every directory as before and each gave the very dicts it gave last time: the
        # previous result (`last_loose`, equal to it) stands
        same = (
            seen_dirs.keys() == entry.dirs.keys() == dir_refs.keys() == entry.dir_refs.keys()
            and all(entry.dir_refs[rel][1] is d[1] for rel, d in dir_refs.items())
        )
        entry.dirs, entry.files, entry.dir_refs = seen_dirs, seen_files, dir_refs
        return entry.last_loose if same else out

    def _list(self, root: str, rel: str, known: _LooseDir | None, now: float) -> _LooseDir | None:
        path = root + rel
        try:
            st = os.stat(path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        stamp = _stamp(st)
        if known is not None and known.stamp == stamp and _trusted(stamp, known.taken):
            return known
        dirs: list[str] = []
        refs: list[tuple[str, bytes]] = []
        try:
            for e in os.scandir(path):
                if e.is_dir(follow_symlinks=False):
                    dirs.append(e.name)
                elif e.is_file(follow_symlinks=False):
                    ref_rel = f"{rel}/{e.name}"
                    ref = os.fsencode(ref_rel)
                    if _valid(ref):
                        refs.append((ref_rel, ref))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _LooseDir(stamp, now, dirs, refs)

    def _read_file(self, path: str, known: _LooseFile | None, now: float) -> _LooseFile | None:
        try:
            if known is not None:
                stamp = _stamp(os.stat(path, follow_symlinks=False))
                if stamp == known.stamp and _trusted(stamp, known.taken):
                    return known
            with open(path, "rb") as f:
                stamp = _stamp(os.fstat(f.fileno()))
                value = f.read(4096).strip()
                self.reads += 1
        except OSError:
            return None
        return _LooseFile(stamp, now, value)

    def learn_packed(self, common: Path, refs: Mapping[bytes, bytes], data: bytes) -> None:
        """The ``packed-refs`` just written holds `data`, made of `refs`: the next read
        compares bytes instead of parsing them again (names read before are not validated
        again)."""
        entry = self._entry(common)
        with entry.lock:
            known = entry.stored.get
            kept = dict(refs)
            # what was not read before (a loop of lookups: cheaper than building the set of
            # every (name, sha) pair when a few of thousands changed)
            for name in [n for n, sha in refs.items() if known(n) != sha]:
                if not (_SHA.fullmatch(refs[name]) and _valid(name)):
                    del kept[name]
            try:
                stamp = _stamp(os.stat(common / "packed-refs"))
            except FileNotFoundError:
                return
            # Taken "long ago": never trusted by stat alone, the next read compares the bytes.
            entry.packed = _Packed(stamp, 0.0, data, kept)

    def forget(self, common: Path) -> None:
        with self._lock:
            dropped = self._entries.pop(os.fspath(common), None)
            if dropped is not None:
                self._total -= dropped.counted


CACHE = RefCache()
"""The process's cache of refs (pollers and the API read the same mirrors again and again)."""


def read_refs(
    gitdir: Path, common: Path | None = None, cache: RefCache | None = None
) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """(refs, symrefs) of the repository: every valid ref under refs/ and ``HEAD``, resolved
    to a sha (those whose chain ends nowhere left out), and the symbolic ones by name.
    `common` is where refs live (a linked worktree's common directory; default `gitdir`).
    The dicts returned are the caller's to change."""
    common = common or gitdir
    cache = CACHE if cache is None else cache
    generation, stored, loose, entry = cache.stored(common)
    try:
        head = (gitdir / "HEAD").read_bytes().strip()
    except FileNotFoundError:
        head = b""
    resolved = entry.resolved
    if resolved is not None and resolved[0] == generation and resolved[1] == head:
        return dict(resolved[2]), dict(resolved[3])
    # Packed values are shas (checked when parsed); only loose refs and HEAD can be symbolic
    # or malformed, so only they are looked at one by one.
    refs = dict(stored)
    symrefs: dict[bytes, bytes] = {}
    looked_at = list(loose.items())
    if head:
        stored = {**stored, b"HEAD": head}
        looked_at.append((b"HEAD", head))
    for name, value in looked_at:
        refs.pop(name, None)
        seen = 0
        while value.startswith(_SYMREF) and seen < _MAX_SYMREF_DEPTH:
            target = value[len(_SYMREF) :].strip()
            if seen == 0:
                symrefs[name] = target
            value = stored.get(target, b"")
            seen += 1
        if len(value) == 40 and not value.startswith(_SYMREF):
            refs[name] = value
    if common == gitdir:  # a worktree's HEAD is its own: cached per common directory only
        entry.resolved = (generation, head, refs, symrefs)
        return dict(refs), dict(symrefs)
    return refs, symrefs


def write_packed_refs(
    gitdir: Path,
    refs: Mapping[bytes, bytes],
    drop_loose: list[bytes],
    cache: RefCache | None = None,
) -> None:
    """Replace the mirror's ``packed-refs`` with `refs` (sorted, as git writes it), then remove
    the loose ref files named in `drop_loose` (which would override it)."""
    cache = CACHE if cache is None else cache
    lines = [b"# pack-refs with: sorted \n"]
    lines += [b"%s %s\n" % (refs[name], name) for name in sorted(refs)]
    data = b"".join(lines)
    fd, tmp = tempfile.mkstemp(dir=gitdir, prefix="packed-refs.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, gitdir / "packed-refs")
    except BaseException:
        os.unlink(tmp)
        cache.forget(gitdir)
        raise
    cache.learn_packed(gitdir, refs, data)
    for name in drop_loose:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            os.unlink(gitdir / os.fsdecode(name))


def write_head(gitdir: Path, target: bytes) -> None:
    """Point the mirror's ``HEAD`` at branch `target` (a full ref name), replaced atomically.
    (dulwich's `set_symbolic_ref` first reads and checks every packed ref.)"""
    fd, tmp = tempfile.mkstemp(dir=gitdir, prefix="HEAD.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_SYMREF + target + b"\n")
        os.replace(tmp, gitdir / "HEAD")
    except BaseException:
        os.unlink(tmp)
        raise
