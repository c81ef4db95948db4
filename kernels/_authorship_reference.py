"""Degree of authorship and truck factor: the pure-Python spec, fallback and test oracle.

Pure: no I/O. The compiled twin (``kernels/_authorship.c``) implements the same steps, in the
same floating-point order, so both give bit-identical results.

The model is Avelino, Passos, Hora and Valente, "A novel approach for estimating truck factors"
(ICPC 2016). For an author *a* of a file *f*:

    DOA = 3.293 + 1.098 * FA + 0.164 * DL - 0.321 * ln(1 + AC)

FA is 1 when *a* created *f* (0 otherwise), DL the changes (commits) of *a* to *f*, AC the
changes to *f* by everyone else. The authors of *f* are those whose DOA is at least 3.293 and
whose normalised DOA (DOA divided by the greatest DOA of *f*) is above 0.75.

Truck factor: rank authors by the number of files they author (ties: the smaller author id
first); remove them in that order while at most half of the files are left without any author;
the authors removed, in order, are the result, and their number is the truck factor. Files that
have no author from the start count as left without one.

Both functions take parallel sequences of ints (one element per row), so the caller maps paths
and emails to ids and the twins never see strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

DOA_CONSTANT = 3.293
DOA_CREATOR = 1.098
DOA_CHANGES = 0.164
DOA_OTHERS = 0.321
AUTHOR_MIN_DOA = 3.293
"""An author's DOA must reach this (the DOA of a creator-less single change with no others)."""
AUTHOR_MIN_NORMALISED = 0.75
"""An author's DOA divided by the file's greatest DOA must exceed this."""


def degree_of_authorship(created: int, changes: int, others: int) -> float:
    """Avelino's DOA; `created` counts as FA = 1 when positive. Evaluated left to right."""
    fa = 1.0 if created > 0 else 0.0
    return (
        DOA_CONSTANT
        + DOA_CREATOR * fa
        + DOA_CHANGES * float(changes)
        - DOA_OTHERS * math.log1p(float(others))
    )


def _check_lengths(*cols: Sequence[int]) -> int:
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        raise ValueError("the sequences must have the same length")
    return n


def authorship(
    files: Sequence[int],
    authors: Sequence[int],
    created: Sequence[int],
    changes: Sequence[int],
) -> tuple[list[float], list[bool]]:
    """DOA of every (file, author) row, and whether that author is an author of the file.

    Rows of one file must be adjacent with file ids non-decreasing; `created` and `changes`
    are non-negative; AC of a row is the file's total changes minus the row's own.
    Raises ValueError on anything else.
    """
    n = _check_lengths(files, authors, created, changes)
    for i in range(n):
        if files[i] < 0 or authors[i] < 0 or created[i] < 0 or changes[i] < 0:
            raise ValueError("ids and counts must be non-negative")
        if i and files[i] < files[i - 1]:
            raise ValueError("rows must be sorted by file id")
    doas = [0.0] * n
    is_author = [False] * n
    start = 0
    while start < n:
        end = start
        total = 0
        while end < n and files[end] == files[start]:
            total += changes[end]
            end += 1
        best = -math.inf
        for i in range(start, end):
            doas[i] = degree_of_authorship(created[i], changes[i], total - changes[i])
            best = max(best, doas[i])
        for i in range(start, end):
            is_author[i] = doas[i] >= AUTHOR_MIN_DOA and doas[i] / best > AUTHOR_MIN_NORMALISED
        start = end
    return doas, is_author


def truck_factor(n_files: int, files: Sequence[int], authors: Sequence[int]) -> list[int]:
    """The authors removed by the greedy truck-factor search, in removal order.

    (`files[i]`, `authors[i]`) says that author authors that file (repeated pairs count twice);
    file ids are below `n_files`. The truck factor is the length of the result.
    """
    n = _check_lengths(files, authors)
    if n_files < 0:
        raise ValueError("n_files must be non-negative")
    for i in range(n):
        if files[i] < 0 or authors[i] < 0:
            raise ValueError("ids must be non-negative")
        if files[i] >= n_files:
            raise ValueError("a file id is not below n_files")
    n_authors = max(authors, default=-1) + 1
    authored = [0] * n_authors
    covering = [0] * n_files
    by_author: list[list[int]] = [[] for _ in range(n_authors)]
    for f, a in zip(files, authors, strict=True):
        authored[a] += 1
        covering[f] += 1
        by_author[a].append(f)
    order = sorted((a for a in range(n_authors) if authored[a]), key=lambda a: (-authored[a], a))
    orphans = sum(1 for c in covering if c == 0)
    removed: list[int] = []
    for a in order:
        if 2 * orphans > n_files:
            break
        for f in by_author[a]:
            covering[f] -= 1
            if covering[f] == 0:
                orphans += 1
        removed.append(a)
    return removed
