"""Walks of the commit graph: the new commits of a poll, and merge bases (reads commits only).

Why not dulwich's `Walker` and `find_merge_base`: they build a `Commit` per commit and map the
pack a second time; these read commit headers through `metre.ingest.git.objects`' cached reader and
give the same order and the same bases.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dulwich.graph import find_merge_base

from metre.ingest.git.commit import Header, commit_time
from metre.ingest.git.objects import Node, reader

__all__ = ["lowest_common_ancestors", "merge_bases", "new_commits", "use_commit_graph"]

_SLOP_SECONDS = 86_400
"""How far below the oldest new commit the walk of known commits goes (clock-skew margin)."""


def merge_bases(repo: Any, ids: Any) -> list[bytes]:
    """The merge bases dulwich's `find_merge_base` finds, reading commits through this
    module's reader (`lowest_common_ancestors`).

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
    return lowest_common_ancestors(rd.node, ids[0], ids[1:], rd.graph)


def use_commit_graph(repo: Any) -> None:
    """Let merge-base searches in `repo` load whole ancestries into a graph numbered
    topologically (`metre.ingest.git.commitgraph`): reading every ancestor's header once (a
    second or two
    for 80,000 commits) makes each search stop at its bases instead of walking by date. Worth it
    for a backfill's many merges; a poll of a few new commits keeps the date-ordered search,
    which walks only the commits newer than its bases (both give the same bases)."""
    reader(repo).load_history = True


_ANC_1, _ANC_2, _STALE, _FOUND = 1, 2, 4, 8


def lowest_common_ancestors(
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
