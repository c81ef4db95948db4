"""Raw objects of one object store, by name, with the caches a walk of a history needs.

Why not dulwich's objects: building `Commit` and `Tree` objects costs more than the line diff
(docs/architecture.md, "Ingest"). Packs are read by the compiled `metre.ingest.packs.PackReader`
(`metre.ingest.git.rawread` for the rest); raw tree bodies are cached, bounded in bytes and keyed by
binary sha (content-addressed, so never stale); commits' parents, time and tree are cached for
graph walks. Tree entries' shas stay binary, as the tree holds them.
"""

from __future__ import annotations

import binascii
import threading
import weakref
from collections import OrderedDict
from typing import Any, NamedTuple

from metre.ingest.git.commit import Header, commit_time, parse_commit
from metre.ingest.git.commitgraph import CommitGraph
from metre.ingest.git.errors import RepositoryError
from metre.ingest.git.rawread import CORRUPT, raw_object
from metre.ingest.packs import PackReader

__all__ = [
    "BLOB",
    "COMMIT",
    "TREE",
    "Entry",
    "Node",
    "Reader",
    "hex_name",
    "is_gitlink",
    "kind",
    "reader",
]

_GRAPH_CACHE_SIZE = 65_536
"""Commits whose parents, time and tree the reader keeps (about 25 MB at most): a backfill
asks for a commit's parent's tree, and merge-base searches walk the same commits again."""
_TREE_CACHE_BYTES = 32 * 1024 * 1024
"""Budget of the raw-tree cache, in bytes of tree bodies (plus `_TREE_OVERHEAD` per tree).

Bounded in bytes, not in trees: a history whose root tree has 7,500 entries has root trees of
about 400 KB each."""
_TREE_OVERHEAD = 100


class Node(NamedTuple):
    parents: tuple[bytes, ...]
    time: int
    tree: bytes


class Entry(NamedTuple):
    mode: int
    sha: bytes
    """Binary (as the tree holds it)."""


class Reader:
    """Raw-object access to one object store, with a thread-safe cache of raw tree bodies."""

    def __init__(self, store: Any) -> None:
        self.store = weakref.proxy(store)  # the cache must not keep its store alive
        self._packs = PackReader(store)
        self._trees: OrderedDict[bytes, bytes] = OrderedDict()
        self._tree_bytes = 0
        self.graph: dict[bytes, Node] = {}
        """Parents, committer time and tree by commit (`node`); emptied when full."""
        self.history = CommitGraph()
        """Whole ancestries numbered topologically, for merge-base searches: filled by a walk
        of a whole history (`new_commits` without a known head), or on demand once
        `load_history` is set (`use_commit_graph`)."""
        self.load_history = False
        self._lock = threading.Lock()

    def raw(self, sha: bytes, expected: int) -> bytes:
        """The content of the object with hex name `sha`, which must be of type `expected`."""
        try:
            return self.raw_binary(binascii.unhexlify(sha), expected)
        except (binascii.Error, ValueError):
            raise RepositoryError(f"{sha!r} is not an object name") from None

    def raw_binary(self, sha: bytes, expected: int) -> bytes:
        """`raw` by binary name (tree entries hold binary names: no hex round trip)."""
        try:
            found = self._packs.get_raw_binary(sha)
            type_num, data = found if found is not None else raw_object(self.store, hex_name(sha))
        except KeyError:
            name = hex_name(sha).decode()
            raise RepositoryError(f"object {name} is missing from the repository") from None
        except CORRUPT as exc:
            raise RepositoryError(
                f"object {hex_name(sha).decode()} cannot be read (corrupt repository?): "
                f"{type(exc).__name__}"
            ) from None
        if type_num != expected:
            raise RepositoryError(
                f"object {hex_name(sha).decode()} is not a {_TYPE_NAMES[expected]}"
            )
        return bytes(data)

    def header(self, sha: bytes) -> Header:
        h = parse_commit(self.raw(sha, COMMIT))
        self.remember(sha, h)
        return h

    def node(self, sha: bytes) -> Node:
        """Parents, committer time and tree of commit `sha` (hex), read once while cached."""
        got = self.graph.get(sha)
        if got is None:
            got = self.remember(sha, parse_commit(self.raw(sha, COMMIT)))
        return got

    def remember(self, sha: bytes, h: Header) -> Node:
        graph = self.graph
        if len(graph) >= _GRAPH_CACHE_SIZE:
            graph.clear()  # bounded; a cleared entry is read again, never wrong
        got = graph[sha] = Node(h.parents, commit_time(h), h.tree)
        return got

    def tree(self, sha: bytes) -> bytes:
        """The raw body of the tree with binary name `sha`.

        The cache evicts the oldest insertion first (not the least recently used): a hit is
        then one lock-free dict lookup (atomic under the GIL), and a hot tree that is evicted
        costs one more read."""
        hit = self._trees.get(sha)
        if hit is not None:
            return hit
        raw = self.raw_binary(sha, TREE)
        with self._lock:
            if sha not in self._trees:
                self._trees[sha] = raw
                self._tree_bytes += len(raw) + _TREE_OVERHEAD
            while self._tree_bytes > _TREE_CACHE_BYTES and len(self._trees) > 1:
                _, old = self._trees.popitem(last=False)
                self._tree_bytes -= len(old) + _TREE_OVERHEAD
        return raw

    def content(self, entry: Entry) -> bytes:
        """The text git diffs for an entry: blob bytes, link target, or the gitlink line."""
        if is_gitlink(entry):
            return b"Subproject commit " + hex_name(entry.sha) + b"\n"
        return self.raw_binary(entry.sha, BLOB)


def hex_name(sha: bytes) -> bytes:
    return binascii.hexlify(sha)


COMMIT, TREE, BLOB = 1, 2, 3
_TYPE_NAMES = {COMMIT: "commit", TREE: "tree", BLOB: "blob"}
_S_IFGITLINK = 0o160000


def is_gitlink(entry: Entry) -> bool:
    return (entry.mode & 0o170000) == _S_IFGITLINK


def kind(entry: Entry) -> int:
    """File, symlink or gitlink (the exec bit is not a type change)."""
    return entry.mode & 0o170000


_readers_lock = threading.Lock()
_readers: weakref.WeakKeyDictionary[Any, Reader] = weakref.WeakKeyDictionary()


def reader(repo: Any) -> Reader:
    """One reader (tree cache) per object store, forgotten with the store."""
    store = repo.object_store
    with _readers_lock:
        reader = _readers.get(store)
        if reader is None:
            reader = _readers[store] = Reader(store)
        return reader
