"""The commits of one history numbered topologically, in memory (pure: no I/O of its own).

Why: a merge's own contribution needs the merge bases of its parents (metre.ingest.git.merges),
and a
search ordered by commit date must keep walking until every commit still queued is known to be
an ancestor of a base: on a merge-heavy history (topics forked from old points, merged into
several long-lived branches) that is tens of thousands of commits per merge. Numbered so that
parents come before children (git's generation numbers play that part in its commit-graph
file), the search visits each commit once in decreasing number and stops as soon as nothing
above a base remains (`kernels.lowest_common_ancestors`, compiled).

A commit is added only after all its parents, so the graph always holds whole ancestries: a
commit in the graph has every one of its ancestors in it, and a search among commits of the
graph is exact.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence

from metre import kernels

__all__ = ["CommitGraph"]


class CommitGraph:
    """Commits (hex names as bytes) numbered in the order they were added, parents first."""

    def __init__(self) -> None:
        self._number: dict[bytes, int] = {}
        self._names: list[bytes] = []
        self._starts = array("i", [0])
        self._parents = array("i")

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, sha: object) -> bool:
        return sha in self._number

    def add(self, sha: bytes, parents: Sequence[bytes]) -> bool:
        """Add `sha` if every parent is already in the graph; whether `sha` is in it now."""
        if sha in self._number:
            return True
        number = self._number
        try:
            ps = [number[p] for p in parents]
        except KeyError:
            return False  # an ancestry the graph does not hold whole: not added
        number[sha] = len(self._names)
        self._names.append(sha)
        self._parents.extend(ps)
        self._starts.append(len(self._parents))
        return True

    def add_ancestries(
        self, tips: Iterable[bytes], parents_of: Callable[[bytes], Sequence[bytes]]
    ) -> None:
        """Add `tips` and all their ancestors not yet in the graph (parents first), reading
        parents through `parents_of` once per commit added."""
        number = self._number
        for tip in tips:
            if tip in number:
                continue
            stack: list[tuple[bytes, Sequence[bytes], int]] = [(tip, parents_of(tip), 0)]
            on_stack = {tip}
            while stack:
                sha, ps, i = stack[-1]
                while i < len(ps) and (ps[i] in number or ps[i] in on_stack):
                    i += 1
                if i < len(ps):
                    stack[-1] = (sha, ps, i + 1)
                    p = ps[i]
                    on_stack.add(p)
                    stack.append((p, parents_of(p), 0))
                    continue
                stack.pop()
                self.add(sha, ps)

    def merge_bases(self, first: bytes, others: Sequence[bytes]) -> list[bytes]:
        """git's merge bases of `first` and `others` (all in the graph), oldest number first."""
        number = self._number
        found = kernels.lowest_common_ancestors(
            self._starts, self._parents, number[first], [number[o] for o in others]
        )
        names = self._names
        return [names[i] for i in found]
