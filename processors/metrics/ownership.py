"""Ownership (degree of authorship) and truck factor, derived on read from `file_authors` and
`file_stats` (pure; the heavy part is the `kernels.authorship` / `kernels.truck_factor` kernel).

Model: Avelino, Passos, Hora, Valente, "A novel approach for estimating truck factors",
ICPC 2016 (formula and thresholds in kernels/_authorship_reference.py). metre's choices:

* Files counted: every path present at head (`file_stats.presence > 0`), of every kind (text,
  binary, symlink, submodule). Avelino et al. drop files Linguist calls documentation,
  vendored or generated; metre applies no such filter, so results are reproducible from git
  alone.
* DL = the author's non-merge commits touching the file, AC = everyone else's; FA = 1 when the
  author added the path at least once (with --no-renames a rename adds a new path: the renamer
  is its creator; a path deleted and added again has each adder as a creator).
* Identity: an individual (lower-cased author emails regrouped by the identities before this
  runs: processors/people.py), named by its smallest email. Author ids are given in email
  order (code point), so ties in the greedy truck-factor search go to the smaller email.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from metre import kernels
from metre.processors.metrics.catalogue import BOTS, INT32_MAX
from metre.processors.metrics.files import AUTHORS, STATS
from metre.processors.metrics.spec import MetricSpec, Param


@dataclass(frozen=True, slots=True)
class FileAuthor:
    """One author's record on one file: non-merge commits touching it, and adds of it."""

    path: str
    email: str
    commits: int
    created: int


@dataclass(frozen=True, slots=True)
class Ownership:
    """Authors (email, DOA; DOA descending, then email) of each counted file, by path, and
    the truck factor: the authors removed by the greedy search, in order, with their files."""

    files: dict[str, list[tuple[str, float]]]
    removed: list[tuple[str, int]]

    @property
    def truck_factor(self) -> int:
        return len(self.removed)


def ownership(rows: Iterable[FileAuthor], counted: Iterable[str]) -> Ownership:
    """Degree of authorship of every (file, author) of the `counted` paths, and the truck factor
    over them. Rows of other paths and rows without commits are ignored."""
    paths = sorted(set(counted))
    file_id = {p: i for i, p in enumerate(paths)}
    kept = [r for r in rows if r.commits > 0 and r.path in file_id]
    emails = sorted({r.email for r in kept})
    author_id = {e: i for i, e in enumerate(emails)}
    kept.sort(key=lambda r: (file_id[r.path], author_id[r.email]))
    fids = [file_id[r.path] for r in kept]
    aids = [author_id[r.email] for r in kept]
    doas, is_author = kernels.authorship(
        fids, aids, [r.created for r in kept], [r.commits for r in kept]
    )
    files: dict[str, list[tuple[str, float]]] = {p: [] for p in paths}
    pair_files: list[int] = []
    pair_authors: list[int] = []
    for i, r in enumerate(kept):
        if is_author[i]:
            files[r.path].append((r.email, doas[i]))
            pair_files.append(fids[i])
            pair_authors.append(aids[i])
    for authors in files.values():
        authors.sort(key=lambda a: (-a[1], a[0]))
    authored: dict[int, int] = {}
    for a in pair_authors:
        authored[a] = authored.get(a, 0) + 1
    removed = kernels.truck_factor(len(paths), pair_files, pair_authors)
    return Ownership(files, [(emails[a], authored[a]) for a in removed])


OWNERSHIP: MetricSpec = MetricSpec(
    "ownership",
    "Main authors of each file present at head by degree of authorship (Avelino et al., "
    "ICPC 2016): DOA = 3.293 + 1.098 FA + 0.164 DL - 0.321 ln(1 + AC); an author has "
    "DOA >= 3.293 and DOA / the file's greatest DOA > 0.75; vendored, generated and lock "
    "files (Linguist's path rules) are left out",
    "DOA (dimensionless)",
    version=4,
    sources=(STATS, AUTHORS, "file_merge_lines"),
    params=(
        BOTS,
        Param("limit", "integer", 100, "files per page, in path order", ge=1, le=1000),
        Param("offset", "integer", 0, "files to skip", ge=0, le=INT32_MAX),
    ),
)
TRUCK_FACTOR: MetricSpec = MetricSpec(
    "truck-factor",
    "Truck factor (Avelino et al., ICPC 2016): remove the author who authors the most files "
    "present at head (ties: smaller email) until more than half of them have no author "
    "left; the number removed, and who, in order; vendored, generated and lock files "
    "(Linguist's path rules) are left out",
    "authors",
    version=4,
    sources=(STATS, AUTHORS, "file_merge_lines"),
    params=(BOTS,),
)
