"""Commits of a local repository as `CommitEvent`s (pure: reads a dulwich object store only).

What a commit's files are: exactly `git log --numstat --no-renames --minimal` for that commit.
Root commits are diffed against the empty tree; merge commits carry no files. Symlinks diff as
their target text, a submodule entry (gitlink) as the one line ``Subproject commit <sha>\\n``.
A path whose type changes (file, symlink, gitlink) is one "T" entry counted on those texts, and
a mode-only change counts 0 0 (or binary), as git prints them. Line counts come from
`kernels.numstat` (git's binary rule: a NUL among the first 8000 bytes).

Paths are bytes in git; events carry them in metre's path form (`ingest.paths.path_text`:
UTF-8, a backslash doubled, other bytes as ``\\xNN``), one to one, so distinct byte paths stay
distinct.

Why it is shaped this way (docs/architecture.md, "Ingest"): dulwich's `Walker` and `Commit`
objects and `tree_changes` cost more than the line diff, so this module reads raw objects
(`object_store.get_raw`), parses only the commit header fields it needs, keeps raw tree bodies
in a cache (bounded in bytes, keyed by binary tree sha: content-addressed, so never stale),
compares two trees with the compiled `kernels.tree_diff` (a side-by-side walk of the sorted
bodies that builds objects only for the entries that differ) and recurses only into subtrees
whose sha changed. Tree entries' shas stay binary, as the tree holds them.
"""

from __future__ import annotations

import binascii
import heapq
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dulwich.graph import find_merge_base

import kernels
from ingest.codelines import code_lines
from ingest.events import BlobDelta, ChangeType, CommitEvent, FileChange, MergeFile
from ingest.git.commit import Header, commit_time, decode, person
from ingest.git.objects import (
    Entry,
    Node,
    Reader,
    is_gitlink,
    kind,
    reader,
)
from ingest.git.treediff import Change, tree_changes
from ingest.mailmap import Mailmap
from ingest.paths import path_text

__all__ = ["commit_event", "new_commits", "use_commit_graph"]

_SLOP_SECONDS = 86_400
"""How far below the oldest new commit the walk of known commits goes (clock-skew margin)."""


def _path(change: Change) -> bytes:
    return change[0]


def _file_change(rd: Reader, path: bytes, o: Entry | None, n: Entry | None) -> FileChange:
    old = rd.content(o) if o else b""
    new = rd.content(n) if n else b""
    change: ChangeType
    if o is None:
        change = "A"
    elif n is None:
        change = "D"
    elif kind(o) != kind(n):
        change = "T"
    else:
        change = "M"
    counts = kernels.numstat(old, new)
    text = path_text(path)
    bo, bn = _measures(text, o, old), _measures(text, n, new)
    blob = BlobDelta(bn[0] - bo[0], bn[1] - bo[1], bn[2] - bo[2], bn[3] - bo[3])
    if counts is None:
        return FileChange(text, 0, 0, True, change, blob)
    return FileChange(text, counts[0], counts[1], False, change, blob)


_Measures = tuple[int, int, int, int]
_NOBLOB: _Measures = (0, 0, 0, 0)
_S_IFLNK = 0o120000


def _measures(path: str, entry: Entry | None, content: bytes) -> _Measures:
    """(bytes, binary, text bytes, lines of code) of the blob at an entry of `path` (path
    form 2; `content`: what `Reader.content` read for it). A submodule entry has no blob in
    this repository (`git ls-tree -l` shows no size): all zero, like an absent path. A symlink's
    blob is its target, which holds no code."""
    if entry is None or is_gitlink(entry):
        return _NOBLOB
    if kernels.is_binary(content):
        return (len(content), 1, 0, 0)
    code = 0 if kind(entry) == _S_IFLNK else code_lines(path, content)
    return (len(content), 0, len(content), code)


def commit_event(repo: Any, repo_id: int, sha: str, mailmap: Mailmap | None = None) -> CommitEvent:
    """The event of commit `sha` (hex) of a dulwich repository; files sorted by raw path.
    Author and committer are mapped by `mailmap` (ingest.mailmap: the head's .mailmap).

    Raises `RepositoryError` when an object is missing or unreadable.
    """
    rd = reader(repo)
    key = sha.encode("ascii")
    h = rd.header(key)
    author = person(h.author, h.encoding, mailmap)
    committer = person(h.committer, h.encoding, mailmap)
    summary = decode(h.message.split(b"\n", 1)[0], h.encoding)
    files: tuple[FileChange, ...] = ()
    merge_files: tuple[MergeFile, ...] = ()
    if len(h.parents) <= 1:
        old_tree = binascii.unhexlify(rd.node(h.parents[0]).tree) if h.parents else None
        changes = sorted(tree_changes(rd, old_tree, binascii.unhexlify(h.tree)), key=_path)
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
    """The merge bases dulwich's `find_merge_base` finds, reading commits through this
    module's reader (`_lowest_common_ancestors`).

    dulwich's own reads map the pack a second time and build `Commit` objects: on a long
    history that mapping's pages grew the RSS by the size of the pack, and were slow. With
    grafts or a shallow clone, dulwich's version runs as it is."""
    provider = repo.parents_provider()
    if provider.grafts or provider.shallows or len(ids) < 2:
        return list(find_merge_base(repo, ids))
    if ids[0] in ids[1:]:
        return [ids[0]]
    rd = reader(repo)
    history = rd.history
    if rd.load_history:
        history.add_ancestries(ids, lambda c: rd.node(c).parents)
    if all(c in history for c in ids):
        return history.merge_bases(ids[0], ids[1:])
    return _lowest_common_ancestors(rd.node, ids[0], ids[1:], rd.graph)


def use_commit_graph(repo: Any) -> None:
    """Let merge-base searches in `repo` load whole ancestries into a graph numbered
    topologically (`ingest.git.commitgraph`): reading every ancestor's header once (a second or two
    for 80,000 commits) makes each search stop at its bases instead of walking by date. Worth it
    for a backfill's many merges; a poll of a few new commits keeps the date-ordered search,
    which walks only the commits newer than its bases (both give the same bases)."""
    reader(repo).load_history = True


_ANC_1, _ANC_2, _STALE, _FOUND = 1, 2, 4, 8


def _lowest_common_ancestors(
    node: Callable[[bytes], Node],
    first: bytes,
    others: list[bytes],
    known: Mapping[bytes, Node] | None = None,
) -> list[bytes]:
    """Lowest common ancestors of `first` and any of `others`, oldest first: the search of
    dulwich's `find_merge_base`, with the same visiting order and so the same answer.

    Commits are visited newest first (committer time, then name), painting each with whose
    ancestor it is; a commit painted by both sides is a candidate and its ancestors are stale.
    The search ends when every queued entry is stale. dulwich re-scans the whole queue before
    each visit to know that (quadratic: a third of a backfill's merge time); here a count of
    the queued entries that are not stale is kept as commits are painted. `known`: commits
    `node` has cached, looked up first (a dict lookup is cheaper than a call)."""
    cached = (known or {}).get
    pop, push = heapq.heappop, heapq.heappush
    state: dict[bytes, int] = {first: _ANC_1}
    queued: dict[bytes, int] = {first: 1}
    queue: list[tuple[int, bytes]] = [(-node(first).time, first)]
    for c in others:
        state[c] = state.get(c, 0) | _ANC_2
        queued[c] = queued.get(c, 0) + 1
        heapq.heappush(queue, (-node(c).time, c))
    live = len(queue)  # entries whose commit is not stale
    found: list[tuple[int, bytes]] = []
    while live:
        neg_time, c = pop(queue)
        queued[c] -= 1
        flags = state[c]
        if not flags & _STALE:
            live -= 1
        flags &= _ANC_1 | _ANC_2 | _STALE
        if flags == _ANC_1 | _ANC_2:
            if not state[c] & _FOUND:
                state[c] |= _FOUND
                found.append((-neg_time, c))
            flags |= _STALE
        for p in (cached(c) or node(c)).parents:
            old = state.get(p, 0)
            if old & flags == flags:
                continue  # nothing new to paint
            t = (cached(p) or node(p)).time
            if t < 0:
                continue  # dulwich's search skips commits dated before 1970
            new = state[p] = old | flags
            if new & _STALE and not old & _STALE:
                live -= queued.get(p, 0)
            push(queue, (-t, p))
            queued[p] = queued.get(p, 0) + 1
            if not new & _STALE:
                live += 1
    result: list[tuple[int, bytes]] = []
    for t, c in found:
        if not state[c] & _STALE and (t, c) not in result:
            result.append((t, c))
    result.sort(key=lambda r: r[0])
    return [c for _, c in result]


def _lines(data: bytes) -> int:
    """git's line count of a text (a last line without a newline counts); 0 for binary."""
    if b"\0" in data[:8000]:
        return 0
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _merge_files(repo: Any, rd: Reader, sha: bytes, h: Header) -> tuple[MergeFile, ...]:
    """What merge `sha` contributes itself to each path: its value (lines, presence) minus the
    sum over the union of its parents' histories (`_union_weights`). Zero for every path a
    merge took from one side while the others left it as in the merge base (a clean merge);
    non-zero where it resolved a conflict, changed something itself, dropped a side's change,
    or both sides made the same change (counted twice by their non-merge commits)."""
    weights = {t: -n for t, n in _union_weights(repo, list(h.parents)).items()}
    weights[sha] = weights.get(sha, 0) + 1
    tree_weight: dict[bytes, int] = {}  # by binary tree name
    for c, n in weights.items():
        t = binascii.unhexlify(h.tree if c == sha else rd.node(c).tree)
        tree_weight[t] = tree_weight.get(t, 0) + n
    # net[path][entry]: the summed weights of the trees holding that entry at that path.
    # The weights are paired, one tree of weight +1 with one of weight -1 (the empty tree
    # pads the shorter side): a path where a pair's trees agree adds +1 and -1 to one entry,
    # nothing; so only the paths where a pair differs are visited. The merge's tree is paired
    # with its first parent's, a merge base with another parent: for a merged topic branch
    # both differ in the branch's own changes only, not in the mainline's since it forked.
    pos: list[bytes | None] = []
    neg: list[bytes | None] = []
    for t, n in tree_weight.items():
        (pos if n > 0 else neg).extend([t] * abs(n))
    first = binascii.unhexlify(rd.node(h.parents[0]).tree)
    for side, t in ((pos, binascii.unhexlify(h.tree)), (neg, first)):
        if t in side:
            side.remove(t)
            side.insert(0, t)
    pad = len(pos) - len(neg)
    (neg if pad > 0 else pos).extend([None] * abs(pad))
    net: dict[bytes, dict[Entry | None, int]] = {}
    for a, b in zip(pos, neg, strict=True):
        if a == b:
            continue
        for path, ea, eb in tree_changes(rd, a, b):
            d = net.get(path)
            if d is None:
                d = net[path] = {}
            d[ea] = d.get(ea, 0) + 1
            d[eb] = d.get(eb, 0) - 1
    values: dict[tuple[str, Entry], tuple[int, int, int, int, int]] = {}

    def value(text: str, e: Entry) -> tuple[int, int, int, int, int]:
        """(lines, bytes, binary, text bytes, code) of an entry at a path, read once per
        merge (by path too: the language, hence the code lines, depends on it)."""
        got = values.get((text, e))
        if got is None:
            if is_gitlink(e):
                got = (1, *_NOBLOB)
            else:
                data = rd.content(e)
                got = (_lines(data), *_measures(text, e, data))
            values[text, e] = got
        return got

    out: list[MergeFile] = []
    for path in sorted(net):
        kept = [(e, n) for e, n in net[path].items() if n and e is not None]
        presence = sum(n for _, n in kept)
        name = path_text(path)
        count = size = binary = text = code = 0
        for e, n in kept:
            v = value(name, e)
            count += n * v[0]
            size += n * v[1]
            binary += n * v[2]
            text += n * v[3]
            code += n * v[4]
        if presence or count or size or binary or text or code:
            out.append(MergeFile(name, count, presence, BlobDelta(size, binary, text, code)))
    return tuple(out)


def new_commits(repo: Any, head: str, known_head: str | None) -> list[str]:
    """Every commit reachable from `head` and not from `known_head`, parents before children.

    The order is deterministic (a depth-first post-order from `head`, parents in recorded
    order). The walk is bounded by the new commits, not by the history: both sides are walked
    newest first by committer time, like `git rev-list head ^known`, and the walk of known
    commits stops a day (`_SLOP_SECONDS`) below the oldest new one. With clock skew beyond that
    margin a few already-known commits may be listed again (harmless: events are idempotent);
    a new commit is never left out. Raises `RepositoryError` for unknown commits.
    """
    rd = reader(repo)
    headers: dict[bytes, Header] = {}

    def get(sha: bytes) -> Header:
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
        heapq.heappush(queue, (-commit_time(get(sha)), sha))
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
    order = _topological(start, lambda s: get(s).parents, walked - uninteresting)
    if known is None:  # a whole history, parents first: number it for merge-base searches
        add = rd.history.add
        for s in order:
            sha = s.encode("ascii")
            add(sha, headers[sha].parents)
    return order


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
