"""Line counts equal to ``git diff --numstat --minimal``: the pure-Python spec, fallback and oracle.

Pure: no I/O. The compiled twin (``kernels/_linediff.c``) implements the same steps.

What git counts (git 2.39, learnt from its observable behaviour, checked against the git CLI in
tests/kernels/, and from the measurements summarised in docs/architecture.md):

* A line is the bytes up to and including ``\\n``. A last line without ``\\n`` is a line of its
  own, different from the same text with ``\\n``. ``\\r`` is an ordinary byte.
* Content is binary when a NUL byte occurs in its first 8000 bytes; numstat then has no counts.
* ``--minimal`` is not a pure longest common subsequence. git prepares the two line sequences
  before its Myers diff:

  1. The common leading and trailing lines are set aside as matched.
  2. Each remaining ("middle") line is classified by how often it occurs on the *other* side,
     counted over that whole file (the trimmed lines included): never -> certainly changed;
     at least a limit -> "maybe"; otherwise kept. The limit belongs to the line's own side:
     2**ceil(bit_length(N) / 2) with N the number of lines of that whole file (a rough square
     root: 1, doubled once per two bits of N), capped at 1024.
  3. A "maybe" line (a blank line, a brace: frequent on the other side) is also set aside as
     changed when it sits inside a run of changed lines: looking at most 100 lines each way, not
     past the middle, through the neighbours that are certainly-changed or maybe, there must be
     a certainly-changed line on both sides, and, with m = the maybes counted on both sides plus
     two (itself, counted once per side) and c = the certainly-changed ones,
     ``m * 4 < m + c``. Only the first classification is consulted, never earlier decisions.
  4. Myers' algorithm, minimal (no cost cut-offs), runs on the lines still kept. Lines set
     aside in 2 and 3 all count as changed.

  So matched = prefix + suffix + LCS(kept old lines, kept new lines), added = len(new) -
  matched, removed = len(old) - matched.

* This holds with git's default diff context (3 lines). With ``-U0`` or ``diff.context=0`` git
  first cuts a common tail off both blobs in 1 KiB blocks, so the lines cut no longer count in
  step 2: seen to change the counts of 2 in 649 generated pairs. metre's definition is the
  default; the test oracle runs git without user configuration.

Only the LCS *length* is needed, so the Myers step is the forward greedy search with one array of
furthest-reaching points per diagonal: O((N + M) * D) time, O(N + M) memory.
"""

from __future__ import annotations

from collections.abc import Sequence

BINARY_SNIFF_BYTES = 8000
"""git looks for a NUL byte in this many leading bytes to call content binary."""
MAX_MAYBE_LIMIT = 1024
"""Cap on the occurrence count above which a line is a "maybe" (git's equivalence limit)."""
SCAN_WINDOW = 100
"""How far, in lines each way, the run around a "maybe" line is examined."""
_KEEP, _DISCARD, _MAYBE = 0, 1, 2


def is_binary(data: bytes) -> bool:
    """True when git would call ``data`` binary: a NUL byte among its first 8000 bytes."""
    return b"\0" in data[:BINARY_SNIFF_BYTES]


def _intern(data: bytes, ids: dict[bytes, int]) -> list[int]:
    """Line ids of ``data``: equal lines (terminator included) get equal ints across calls.

    Keys are lines without their ``\\n``; an unterminated last line is keyed with a ``\\n``
    appended, which no terminated line's key can contain, so the two never collide.
    """
    if not data:
        return []
    parts = data.split(b"\n")
    last = parts.pop()
    if last:
        parts.append(last + b"\n")
    out = []
    for line in parts:
        i = ids.get(line)
        if i is None:
            i = ids[line] = len(ids)
        out.append(i)
    return out


def maybe_limit(n_lines: int) -> int:
    """Occurrences on the other side from which a line of a file of ``n_lines`` is a "maybe"."""
    limit = 1 << ((n_lines.bit_length() + 1) // 2)
    return min(limit, MAX_MAYBE_LIMIT)


def _classify(side: Sequence[int], lo: int, hi: int, other_counts: dict[int, int]) -> list[int]:
    """First classification of ``side[lo:hi]`` by occurrences of each line in the other file."""
    limit = maybe_limit(len(side))
    marks = []
    for line in side[lo:hi]:
        n = other_counts.get(line, 0)
        marks.append(_DISCARD if n == 0 else _MAYBE if n >= limit else _KEEP)
    return marks


def _maybe_is_changed(marks: Sequence[int], i: int) -> bool:
    """Whether the "maybe" line ``marks[i]`` sits deep enough in a run of changed lines."""
    maybes = 2
    changed_before = 0
    for j in range(i - 1, max(-1, i - 1 - SCAN_WINDOW), -1):
        if marks[j] == _DISCARD:
            changed_before += 1
        elif marks[j] == _MAYBE:
            maybes += 1
        else:
            break
    if changed_before == 0:
        return False
    changed_after = 0
    for j in range(i + 1, min(len(marks), i + 1 + SCAN_WINDOW)):
        if marks[j] == _DISCARD:
            changed_after += 1
        elif marks[j] == _MAYBE:
            maybes += 1
        else:
            break
    if changed_after == 0:
        return False
    return maybes * 4 < maybes + changed_before + changed_after


def _kept(side: Sequence[int], lo: int, marks: Sequence[int]) -> list[int]:
    """The middle lines of ``side`` that survive git's preparation step, in order."""
    return [
        side[lo + i]
        for i, mark in enumerate(marks)
        if mark == _KEEP or (mark == _MAYBE and not _maybe_is_changed(marks, i))
    ]


def _counts(side: Sequence[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for line in side:
        counts[line] = counts.get(line, 0) + 1
    return counts


def lcs_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of a longest common subsequence of ``a`` and ``b``, exact (Myers' greedy O(ND))."""
    n, m = len(a), len(b)
    start = 0
    while start < n and start < m and a[start] == b[start]:
        start += 1
    end_a, end_b = n, m
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    common = start + (n - end_a)
    a, b = a[start:end_a], b[start:end_b]
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return common
    offset = n + m + 1
    furthest = [0] * (2 * offset + 1)  # furthest x reached on diagonal k = x - y, at k + offset
    for d in range(n + m + 1):
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and furthest[offset + k - 1] < furthest[offset + k + 1]):
                x = furthest[offset + k + 1]  # step down: an insertion
            else:
                x = furthest[offset + k - 1] + 1  # step right: a deletion
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            furthest[offset + k] = x
            if x >= n and y >= m:
                return common + (n + m - d) // 2
    raise AssertionError("unreachable: d = n + m always reaches the end")


def count_lines(old: bytes, new: bytes) -> tuple[int, int]:
    """(added, removed) lines from ``old`` to ``new``, as ``git diff --numstat --minimal``.

    Either side may be empty (an added or deleted file). Binary content is not checked here.
    """
    if old == new:
        return 0, 0
    ids: dict[bytes, int] = {}
    a, b = _intern(old, ids), _intern(new, ids)
    n, m = len(a), len(b)
    prefix = 0
    while prefix < n and prefix < m and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < n - prefix and suffix < m - prefix and a[n - 1 - suffix] == b[m - 1 - suffix]:
        suffix += 1
    if prefix + suffix == n or prefix + suffix == m:
        matched = prefix + suffix
    else:
        marks_a = _classify(a, prefix, n - suffix, _counts(b))
        marks_b = _classify(b, prefix, m - suffix, _counts(a))
        kept_a, kept_b = _kept(a, prefix, marks_a), _kept(b, prefix, marks_b)
        matched = prefix + suffix + lcs_length(kept_a, kept_b)
    return m - matched, n - matched


def numstat(old: bytes, new: bytes) -> tuple[int, int] | None:
    """(added, removed) as ``git diff --numstat --minimal``, or None when either side is binary."""
    if is_binary(old) or is_binary(new):
        return None
    return count_lines(old, new)
