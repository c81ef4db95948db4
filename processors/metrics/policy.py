"""Which commits a per-commit metric counts: the merge and empty-commit policy (pure).

Every commit falls in exactly one kind, stored as a key column (`kind`) of the per-commit
metric tables (activity, authors, contributors, punch card, commit size), so a read chooses
the kinds it sums and no policy needs a recompute:

* `CHANGE` (0): a non-merge commit with at least one file in `git log --numstat`;
* `EMPTY` (1): a non-merge commit with none (`git commit --allow-empty`, a root commit of an
  empty tree); a mode-only or binary-only change is not empty (numstat lists the file);
* `MERGE` (2): a commit with two or more parents, whatever it changed itself.

`merges=exclude` drops the merges, `empty=exclude` the empty non-merge commits; the preset
`policy=github` is both (GitHub's contributor statistics count neither), `policy=all` neither.
Explicit `merges` / `empty` values override a preset's. docs/metrics.md has the definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from metre.contracts.events import CommitEvent
from metre.processors.metrics.catalogue import Param

CHANGE, EMPTY, MERGE = 0, 1, 2

Choice = Literal["include", "exclude"]
Preset = Literal["github", "all"]

PRESETS: dict[str, tuple[Choice, Choice]] = {
    "github": ("exclude", "exclude"),
    "all": ("include", "include"),
}
"""Preset name -> (merges, empty)."""


def kind(e: CommitEvent) -> int:
    """The commit's kind: MERGE, EMPTY (no numstat file) or CHANGE."""
    if e.is_merge:
        return MERGE
    return CHANGE if e.files else EMPTY


@dataclass(frozen=True, slots=True)
class Policy:
    """Which commits count: merges and empty non-merge commits included or excluded."""

    merges: Choice = "include"
    empty: Choice = "include"
    preset: Preset | None = None

    @property
    def kinds(self) -> list[int]:
        """The kinds counted, ascending (what reads pass as `kind = ANY(...)`)."""
        out = [CHANGE]
        if self.empty == "include":
            out.append(EMPTY)
        if self.merges == "include":
            out.append(MERGE)
        return out

    def params(self) -> dict[str, Any]:
        """The policy as provenance parameters (resolved values, and the preset asked for)."""
        return {"policy": self.preset, "merges": self.merges, "empty": self.empty}


def resolve(
    preset: Preset | None,
    merges: Choice | None,
    empty: Choice | None,
    default: Policy = Policy(),
) -> Policy:
    """The policy of a request: the metric's default, then the preset, then explicit values."""
    m, e = default.merges, default.empty
    if preset is not None:
        m, e = PRESETS[preset]
    return Policy(merges if merges is not None else m, empty if empty is not None else e, preset)


COMMIT_SIZE_DEFAULT = Policy(merges="exclude")
"""commit-size has always left merges out (they carry no numstat rows: size 0)."""


def params(default: Policy = Policy()) -> tuple[Param, ...]:
    """The catalogue parameters of a metric whose default policy is `default`."""
    return (
        Param(
            "policy", "string", None,
            "preset: github = merges and empty commits excluded (GitHub's contributor "
            "statistics); all = both included (merges / empty override it)", tuple(PRESETS),
        ),
        Param(
            "merges", "string", default.merges,
            "merge commits (two or more parents) counted or not; default per metric",
            ("include", "exclude"),
            optional=True,
        ),
        Param(
            "empty", "string", default.empty,
            "empty non-merge commits (no file in git log --numstat) counted or not",
            ("include", "exclude"), optional=True,
        ),
    )  # fmt: skip


def resolver(default: Policy = Policy()) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A metric's `spec.Resolver`: the query's values, with `policy`, `merges` and `empty`
    resolved against the metric's default (the values results are stamped with)."""

    def resolve(values: Mapping[str, Any]) -> dict[str, Any]:
        p = resolve_policy(values, default)
        return {**values, **p.params()}

    return resolve


def resolve_policy(values: Mapping[str, Any], default: Policy = Policy()) -> Policy:
    """The policy of a request's values (`resolve`)."""
    return resolve(values["policy"], values["merges"], values["empty"], default)


def of(params: Mapping[str, Any]) -> Policy:
    """The policy resolved parameters stand for (see `resolver`)."""
    return Policy(params["merges"], params["empty"], params["policy"])
