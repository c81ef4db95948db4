"""Commits of a local repository as `CommitEvent`s (pure: reads a dulwich object store only).

What a commit's files are: exactly `git log --numstat --no-renames --minimal` for that commit.
Root commits are diffed against the empty tree; merge commits carry no files. Symlinks diff as
their target text, a submodule entry (gitlink) as the one line ``Subproject commit <sha>\\n``.
A path whose type changes (file, symlink, gitlink) is one "T" entry counted on those texts, and
a mode-only change counts 0 0 (or binary), as git prints them. Line counts come from
`kernels.numstat` (git's binary rule: a NUL among the first 8000 bytes).

Paths are bytes in git; they are decoded as UTF-8, invalid bytes as backslash escapes
(``errors="backslashreplace"``, e.g. ``caf\\xe9.txt``), so distinct byte paths stay distinct.

Why it is shaped this way (see notes/ingest-profile.md): dulwich's `Walker` and `Commit`
objects and `tree_changes` cost more than the line diff, so this module reads raw objects
(`object_store.get_raw`), parses only the commit header fields it needs, parses each tree once
into a cached entry set (LRU bounded in bytes, keyed by tree sha: content-addressed, so never
stale), compares two
trees as the symmetric difference of their entry sets and recurses only into subtrees whose sha
changed.
"""

from __future__ import annotations

import codecs
import heapq
import stat
import threading
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

from dulwich import graph as _graph
from dulwich.errors import ApplyDeltaError, ChecksumMismatch, FileFormatException, ObjectMissing
from dulwich.graph import find_merge_base
from dulwich.objects import parse_tree

import kernels
from ingest import gitdate
from ingest.events import ChangeType, CommitEvent, FileChange, MergeFile, Person
from ingest.mailmap import Mailmap
from ingest.packs import PackReader

__all__ = ["RepositoryError", "commit_event", "new_commits"]

_find_lcas: Any = getattr(_graph, "_find_lcas", None)
"""dulwich's lowest-common-ancestor search on lookup functions (None: use find_merge_base)."""
_GRAPH_CACHE_SIZE = 65_536
"""Commits whose parents and time the merge-base searches keep (about 20 MB at most)."""
_TREE_CACHE_BYTES = 64 * 1024 * 1024
"""Budget of the parsed-tree LRU, in estimated bytes of Python objects (`_tree_weight`).

Bounded in bytes, not in trees: a parsed tree costs about 200 bytes per entry, so a count
bound of a few thousand trees held gigabytes on a history whose root tree has 7,500 entries."""
_SLOP_SECONDS = 86_400
"""How far below the oldest new commit the walk of known commits goes (clock-skew margin)."""


class RepositoryError(Exception):
    """The repository cannot be read: missing or corrupt objects, unknown revisions, bad URLs.

    The message is meant for users: no stack trace text, no credentials.
    """


class _Header(NamedTuple):
    tree: bytes
    parents: tuple[bytes, ...]
    author: bytes
    committer: bytes
    encoding: str | None
    message: bytes


class _Entry(NamedTuple):
    mode: int
    sha: bytes


_Item = tuple[bytes, int, bytes]
_Tree = frozenset[_Item]
"""A parsed tree: its (name, mode, sha) items as a set (plain tuples: cheap)."""


def _tree_weight(raw: bytes, entries: int) -> int:
    """Estimated bytes of a parsed tree: per entry a tuple, two bytes objects and a set slot."""
    return len(raw) + 200 * entries


class _Reader:
    """Raw-object access to one object store, with a thread-safe LRU of parsed trees."""

    def __init__(self, store: Any) -> None:
        self.store = weakref.proxy(store)  # the cache must not keep its store alive
        self._packs = PackReader(store)
        self._trees: OrderedDict[bytes, tuple[_Tree, int]] = OrderedDict()
        self._tree_bytes = 0
        self.graph: dict[bytes, tuple[tuple[bytes, ...], int]] = {}
        """Parents and committer time by commit, for merge-base searches (`_merge_bases`)."""
        self._lock = threading.Lock()

    def raw(self, sha: bytes, expected: int) -> bytes:
        try:
            found = self._packs.get_raw(sha)
            type_num, data = found if found is not None else self.store.get_raw(sha)
        except KeyError:
            raise RepositoryError(f"object {sha.decode()} is missing from the repository") from None
        except _CORRUPT as exc:
            raise RepositoryError(
                f"object {sha.decode()} cannot be read (corrupt repository?): {type(exc).__name__}"
            ) from None
        if type_num != expected:
            raise RepositoryError(f"object {sha.decode()} is not a {_TYPE_NAMES[expected]}")
        return bytes(data)

    def header(self, sha: bytes) -> _Header:
        return _parse_commit(self.raw(sha, _COMMIT))

    def tree(self, sha: bytes) -> _Tree:
        with self._lock:
            hit = self._trees.get(sha)
            if hit is not None:
                self._trees.move_to_end(sha)
                return hit[0]
        raw = self.raw(sha, _TREE)
        try:
            items = parse_tree(raw, len(sha) // 2)
        except (ValueError, TypeError) as exc:
            raise RepositoryError(f"tree {sha.decode()} is corrupt: {exc}") from None
        parsed: _Tree = frozenset(items)
        weight = _tree_weight(raw, len(parsed))
        with self._lock:
            old = self._trees.pop(sha, None)
            if old is not None:
                self._tree_bytes -= old[1]
            self._trees[sha] = (parsed, weight)
            self._tree_bytes += weight
            while self._tree_bytes > _TREE_CACHE_BYTES and len(self._trees) > 1:
                _, (_, w) = self._trees.popitem(last=False)
                self._tree_bytes -= w
        return parsed

    def content(self, entry: _Entry) -> bytes:
        """The text git diffs for an entry: blob bytes, link target, or the gitlink line."""
        if _is_gitlink(entry):
            return b"Subproject commit " + entry.sha + b"\n"
        return self.raw(entry.sha, _BLOB)


_COMMIT, _TREE, _BLOB = 1, 2, 3
_CORRUPT = (
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
_TYPE_NAMES = {_COMMIT: "commit", _TREE: "tree", _BLOB: "blob"}
_S_IFGITLINK = 0o160000


def _is_gitlink(entry: _Entry) -> bool:
    return (entry.mode & 0o170000) == _S_IFGITLINK


def _is_dir(entry: _Entry | None) -> bool:
    return entry is not None and (entry.mode & 0o170000) == stat.S_IFDIR


def _kind(entry: _Entry) -> int:
    """File, symlink or gitlink (the exec bit is not a type change)."""
    return entry.mode & 0o170000


_readers_lock = threading.Lock()
_readers: weakref.WeakKeyDictionary[Any, _Reader] = weakref.WeakKeyDictionary()


def _reader(repo: Any) -> _Reader:
    """One reader (tree cache) per object store, forgotten with the store."""
    store = repo.object_store
    with _readers_lock:
        reader = _readers.get(store)
        if reader is None:
            reader = _readers[store] = _Reader(store)
        return reader


def _parse_commit(raw: bytes) -> _Header:
    head, sep, message = raw.partition(b"\n\n")
    if not sep:
        head, message = raw.rstrip(b"\n"), b""
    tree = b""
    parents: list[bytes] = []
    author = committer = b""
    encoding: str | None = None
    for line in head.split(b"\n"):
        if line.startswith(b" "):
            continue  # continuation of a multi-line header (gpgsig, mergetag)
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value
        elif key == b"parent":
            parents.append(value)
        elif key == b"author":
            author = value
        elif key == b"committer":
            committer = value
        elif key == b"encoding":
            encoding = value.decode("ascii", "replace")
    if not tree:
        raise RepositoryError("a commit without a tree (corrupt repository?)")
    return _Header(tree, tuple(parents), author, committer, encoding, message)


def _decode(data: bytes, encoding: str | None) -> str:
    """As git log shows it: re-encoded from the commit's encoding, else UTF-8 (replacement)."""
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            encoding = None
    return data.decode(encoding or "utf-8", "replace")


def _person(ident: bytes, encoding: str | None, mailmap: Mailmap | None = None) -> Person:
    """Parse ``Name <email> <seconds> <+hhmm>`` the way git splits an identity line, map it
    through `mailmap` (as ``git log --use-mailmap`` does), then lower-case the email."""
    lt = ident.find(b"<")
    gt = ident.find(b">", lt + 1) if lt >= 0 else -1
    if lt < 0 or gt < 0:  # git finds no identity, hence no date, in such a line
        return Person(_decode(ident.strip(), encoding), "", gitdate.EPOCH, "")
    name = _decode(ident[:lt].strip(), encoding)
    email = ident[lt + 1 : gt].decode("utf-8", "replace")
    if mailmap:
        name, email = mailmap.map(name, email)
    when, raw = _time(ident[ident.rfind(b">") + 1 :])
    return Person(name, email.lower(), when, raw)


def _time(raw: bytes) -> tuple[datetime, str | None]:
    """The date as git log shows it, and a flag when a datetime cannot hold it (never raises:
    a date never fails a commit). See `ingest.gitdate`."""
    return gitdate.parse(raw)


_Change = tuple[bytes, _Entry | None, _Entry | None]


def _tree_changes(
    rd: _Reader, old: bytes | None, new: bytes | None, prefix: bytes = b""
) -> Iterator[_Change]:
    """(path, old entry, new entry) for every non-tree path whose mode or sha differs."""
    old_items: _Tree = rd.tree(old) if old else frozenset()
    new_items: _Tree = rd.tree(new) if new else frozenset()
    # names are unique within a tree: each differing item is its name's only one on its side
    sides: dict[bytes, list[_Item | None]] = {}
    for item in old_items ^ new_items:
        side = sides.setdefault(item[0], [None, None])
        side[0 if item in old_items else 1] = item
    for name, (old_item, new_item) in sides.items():
        o = _Entry(old_item[1], old_item[2]) if old_item else None
        n = _Entry(new_item[1], new_item[2]) if new_item else None
        path = prefix + name
        if _is_dir(o) or _is_dir(n):
            # a tree on either side: recurse; a file on the other side is its own change
            old_sub = o.sha if o is not None and _is_dir(o) else None
            new_sub = n.sha if n is not None and _is_dir(n) else None
            yield from _tree_changes(rd, old_sub, new_sub, path + b"/")
            o = None if old_sub else o
            n = None if new_sub else n
            if o is None and n is None:
                continue
        yield path, o, n


def _file_change(rd: _Reader, path: bytes, o: _Entry | None, n: _Entry | None) -> FileChange:
    old = rd.content(o) if o else b""
    new = rd.content(n) if n else b""
    change: ChangeType
    if o is None:
        change = "A"
    elif n is None:
        change = "D"
    elif _kind(o) != _kind(n):
        change = "T"
    else:
        change = "M"
    counts = kernels.numstat(old, new)
    text = path.decode("utf-8", "backslashreplace")
    if counts is None:
        return FileChange(text, 0, 0, True, change)
    return FileChange(text, counts[0], counts[1], False, change)


def commit_event(repo: Any, repo_id: int, sha: str, mailmap: Mailmap | None = None) -> CommitEvent:
    """The event of commit `sha` (hex) of a dulwich repository; files sorted by raw path.
    Author and committer are mapped by `mailmap` (ingest.mailmap: the head's .mailmap).

    Raises `RepositoryError` when an object is missing or unreadable.
    """
    rd = _reader(repo)
    key = sha.encode("ascii")
    h = rd.header(key)
    author = _person(h.author, h.encoding, mailmap)
    committer = _person(h.committer, h.encoding, mailmap)
    summary = _decode(h.message.split(b"\n", 1)[0], h.encoding)
    files: tuple[FileChange, ...] = ()
    merge_files: tuple[MergeFile, ...] = ()
    if len(h.parents) <= 1:
        old_tree = rd.header(h.parents[0]).tree if h.parents else None
        changes = sorted(_tree_changes(rd, old_tree, h.tree), key=lambda c: c[0])
        files = tuple(_file_change(rd, p, o, n) for p, o, n in changes)
    else:
        merge_files = _merge_files(repo, rd, key, h)
    return CommitEvent(
        repo_id=repo_id,
        sha=sha,
        parents=tuple(p.decode("ascii") for p in h.parents),
        author=author,
        committer=committer,
        summary=summary,
        files=files,
        merge_files=merge_files,
    )


def _union_weights(repo: Any, commits: list[bytes]) -> dict[bytes, int]:
    """Weights w with sum(w[c] * v(c)) = the sum of an additive per-commit quantity over the
    union of the ancestries of `commits`, given that the sum over one commit's ancestry is
    v(commit) (a path's lines, its presence).

    Inclusion-exclusion, one commit at a time: U(xs + [y]) = U(xs) + anc(y) - (anc(y) & U(xs)),
    and anc(y) & U(xs) is the union of the ancestries of the lowest common ancestors of y and
    any of xs (their merge bases), computed the same way (they are older: it terminates)."""
    w: dict[bytes, int] = {}
    done: list[bytes] = []
    for y in commits:
        w[y] = w.get(y, 0) + 1
        if done:
            ids: Any = [y, *done]
            bases = sorted({bytes(b) for b in _merge_bases(repo, ids)})
            for b, n in _union_weights(repo, bases).items():
                w[b] = w.get(b, 0) - n
        done.append(y)
    return {c: n for c, n in w.items() if n}


def _merge_bases(repo: Any, ids: Any) -> list[bytes]:
    """dulwich's `find_merge_base`, reading commits through this module's reader.

    dulwich's own reads map the pack a second time and build `Commit` objects: on a long
    history that mapping's pages grew the RSS by the size of the pack, and were slow. With
    grafts or a shallow clone (or an older dulwich), dulwich's version runs as it is."""
    provider = repo.parents_provider()
    if _find_lcas is None or provider.grafts or provider.shallows or len(ids) < 2:
        return list(find_merge_base(repo, ids))
    if ids[0] in ids[1:]:
        return [ids[0]]
    rd = _reader(repo)
    seen = rd.graph  # shared by the searches of a backfill; emptied when full (bounded)

    def get(c: bytes) -> tuple[tuple[bytes, ...], int]:
        got = seen.get(c)
        if got is None:
            h = rd.header(c)
            if len(seen) >= _GRAPH_CACHE_SIZE:
                seen.clear()
            got = seen[c] = (h.parents, _commit_time(h))
        return got

    found: list[bytes] = _find_lcas(lambda c: list(get(c)[0]), ids[0], ids[1:], lambda c: get(c)[1])
    return found


def _lines(data: bytes) -> int:
    """git's line count of a text (a last line without a newline counts); 0 for binary."""
    if b"\0" in data[:8000]:
        return 0
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _merge_files(repo: Any, rd: _Reader, sha: bytes, h: _Header) -> tuple[MergeFile, ...]:
    """What merge `sha` contributes itself to each path: its value (lines, presence) minus the
    sum over the union of its parents' histories (`_union_weights`). Zero for every path a
    merge took from one side while the others left it as in the merge base (a clean merge);
    non-zero where it resolved a conflict, changed something itself, dropped a side's change,
    or both sides made the same change (counted twice by their non-merge commits)."""
    weights = {t: -n for t, n in _union_weights(repo, list(h.parents)).items()}
    weights[sha] = weights.get(sha, 0) + 1
    tree_weight: dict[bytes, int] = {}
    for c, n in weights.items():
        t = h.tree if c == sha else rd.header(c).tree
        tree_weight[t] = tree_weight.get(t, 0) + n
    # entry of each path in the merge's tree, and in each other tree where it differs
    mine: dict[bytes, _Entry | None] = {}
    theirs: dict[bytes, dict[bytes, _Entry | None]] = {}
    for t in tree_weight:
        if t == h.tree:
            continue
        diff = theirs[t] = {}
        for path, old, new in _tree_changes(rd, t, h.tree):
            diff[path] = old
            mine[path] = new
    sizes: dict[bytes, int] = {}

    def lines(e: _Entry) -> int:
        if _is_gitlink(e):
            return 1
        if e.sha not in sizes:
            sizes[e.sha] = _lines(rd.content(e))
        return sizes[e.sha]

    out: list[MergeFile] = []
    for path in sorted(mine):
        net: dict[_Entry | None, int] = {}
        for t, n in tree_weight.items():
            e = theirs[t].get(path, mine[path]) if t in theirs else mine[path]
            net[e] = net.get(e, 0) + n
        kept = [(e, n) for e, n in net.items() if n and e is not None]
        presence = sum(n for _, n in kept)
        count = sum(n * lines(e) for e, n in kept)
        if presence or count:
            out.append(MergeFile(path.decode("utf-8", "backslashreplace"), count, presence))
    return tuple(out)


def _commit_time(h: _Header) -> int:
    parts = h.committer[h.committer.rfind(b">") + 1 :].split()
    try:
        return int(parts[0])
    except (ValueError, IndexError):
        return 0


def new_commits(repo: Any, head: str, known_head: str | None) -> list[str]:
    """Every commit reachable from `head` and not from `known_head`, parents before children.

    The order is deterministic (a depth-first post-order from `head`, parents in recorded
    order). The walk is bounded by the new commits, not by the history: both sides are walked
    newest first by committer time, like `git rev-list head ^known`, and the walk of known
    commits stops a day (`_SLOP_SECONDS`) below the oldest new one. With clock skew beyond that
    margin a few already-known commits may be listed again (harmless: events are idempotent);
    a new commit is never left out. Raises `RepositoryError` for unknown commits.
    """
    rd = _reader(repo)
    headers: dict[bytes, _Header] = {}

    def get(sha: bytes) -> _Header:
        h = headers.get(sha)
        if h is None:
            h = headers[sha] = rd.header(sha)
        return h

    start = head.encode("ascii")
    known = known_head.encode("ascii") if known_head else None
    if start == known:
        return []
    uninteresting: set[bytes] = set()
    walked: set[bytes] = set()  # popped: parents already queued
    queue: list[tuple[int, bytes]] = []
    seen: set[bytes] = set()
    interesting_in_queue = 0

    def push(sha: bytes) -> None:
        nonlocal interesting_in_queue
        if sha in seen:
            return
        seen.add(sha)
        heapq.heappush(queue, (-_commit_time(get(sha)), sha))
        if sha not in uninteresting:
            interesting_in_queue += 1

    def mark(sha: bytes) -> None:
        """Mark `sha` and its already-walked ancestors known."""
        nonlocal interesting_in_queue
        stack = [sha]
        while stack:
            s = stack.pop()
            if s in uninteresting:
                continue
            uninteresting.add(s)
            if s in seen and s not in walked:
                interesting_in_queue -= 1
            if s in walked:
                stack.extend(get(s).parents)

    if known is not None:
        get(known)
        mark(known)
        push(known)
    push(start)
    oldest_new: int | None = None
    while queue:
        if interesting_in_queue == 0 and (
            oldest_new is None or -queue[0][0] < oldest_new - _SLOP_SECONDS
        ):
            break
        neg_time, sha = heapq.heappop(queue)
        walked.add(sha)
        h = get(sha)
        if sha in uninteresting:
            for p in h.parents:
                mark(p)
        else:
            interesting_in_queue -= 1
            oldest_new = -neg_time if oldest_new is None else min(oldest_new, -neg_time)
        for p in h.parents:
            push(p)
    return _topological(start, lambda s: get(s).parents, walked - uninteresting)


def _topological(start: bytes, parents_of: Any, wanted: set[bytes]) -> list[str]:
    """Post-order DFS from `start` over `wanted`: every parent precedes its children."""
    order: list[str] = []
    if start not in wanted:
        return order
    done: set[bytes] = set()
    stack: list[tuple[bytes, Iterator[bytes]]] = [(start, iter(parents_of(start)))]
    done.add(start)
    while stack:
        sha, it = stack[-1]
        for p in it:
            if p in wanted and p not in done:
                done.add(p)
                stack.append((p, iter(parents_of(p))))
                break
        else:
            stack.pop()
            order.append(sha.decode("ascii"))
    return order
