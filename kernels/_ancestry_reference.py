"""Lowest common ancestors in a commit graph numbered topologically (pure; the spec of
kernels/_ancestry.c).

The graph has `n` commits numbered 0..n-1 so that every parent has a smaller number than its
child (a post-order of the history, as a walk that adds a commit after its parents numbers
them). Commit i's parents are ``parents[starts[i]:starts[i + 1]]``; `starts` has n + 1 items.
Both are sequences of C ints (``array('i')`` in practice: the compiled twin reads their
buffers, no copy).

`lowest_common_ancestors(starts, parents, first, others)` returns, in increasing order, the
commits that are ancestors (inclusive) of `first` and of at least one of `others`, and that are
not an ancestor of another such commit: git's merge bases of `first` and `others`.

How: each commit is painted with whose ancestor it is (bit 1: of `first`, bit 2: of one of
`others`), by visiting commits in decreasing number, each once: a commit's number being below
its children's, all of them were visited before it, so its paint is final when it is visited
(what git's generation numbers give its merge-base search; ordering by commit date instead can
visit a commit before a child whose clock was behind, and must visit it again). A commit with
both bits is a result unless it is stale: an ancestor of a result; staleness (bit 4) is painted
down like the rest. The visit stops when no painted commit still to visit is without the stale
bit: below that point nothing can become a result. The cost is the span of numbers between the
highest input and the lowest result, one byte of paint per commit of it.

Raises ValueError for a number out of range, a parent not below its child, or inconsistent
`starts`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["lowest_common_ancestors"]

_FIRST, _OTHER, _STALE = 1, 2, 4
_BOTH = _FIRST | _OTHER


def lowest_common_ancestors(
    starts: Sequence[int], parents: Sequence[int], first: int, others: Sequence[int]
) -> list[int]:
    n = len(starts) - 1
    if n < 0:
        raise ValueError("starts must hold n + 1 offsets")
    inputs = [first, *others]
    for c in inputs:
        if not 0 <= c < n:
            raise ValueError(f"commit {c} is not in the graph of {n} commits")
    if not others:
        return []
    top = max(inputs)
    paint = bytearray(top + 1)
    paint[first] |= _FIRST
    for c in others:
        paint[c] |= _OTHER
    live = sum(1 for f in paint if f)  # painted, not stale, not yet visited
    found: list[int] = []
    for i in range(top, -1, -1):
        f = paint[i]
        if not f:
            continue
        if not f & _STALE:
            live -= 1
            if f & _BOTH == _BOTH:
                found.append(i)
                f |= _STALE
        lo, hi = starts[i], starts[i + 1]
        if not 0 <= lo <= hi <= len(parents):
            raise ValueError(f"starts of commit {i} are out of range")
        for k in range(lo, hi):
            p = parents[k]
            if not 0 <= p < i:
                raise ValueError(f"parent {p} of commit {i} is not below it")
            old = paint[p]
            new = old | f
            if new != old:
                paint[p] = new
                if not old:
                    live += not new & _STALE
                elif not old & _STALE and new & _STALE:
                    live -= 1
        if not live:
            break
    found.reverse()
    return found
