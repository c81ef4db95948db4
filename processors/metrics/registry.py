"""The registry: every metric writer and every served metric, listed once, by import (pure).

Nothing here looks a module or an attribute up by name: a misspelt one fails at import. The
order of `WRITERS` is the order the sink folds an event in (any order gives the same rows);
`SPECS` is the catalogue (served sorted by name).
"""

from __future__ import annotations

from metre.processors.metrics import (
    activity,
    authors,
    commit_size,
    contributors,
    coupling,
    files,
    languages,
    merges,
    ownership,
    punchcard,
    releases,
)
from metre.processors.metrics.spec import MetricSpec, Writer

WRITERS: tuple[Writer, ...] = (
    activity.WRITER,
    authors.WRITER,
    contributors.WRITER,
    punchcard.WRITER,
    commit_size.WRITER,
    languages.WRITER,
    files.WRITER,
    merges.WRITER,
)
"""What the sink does with each event: one writer per module that maintains tables."""

SPECS: tuple[MetricSpec, ...] = (
    activity.SPEC,
    authors.SPEC,
    contributors.SPEC,
    punchcard.SPEC,
    commit_size.SPEC,
    languages.SPEC,
    files.FILES,
    files.HOTSPOTS,
    ownership.OWNERSHIP,
    ownership.TRUCK_FACTOR,
    coupling.SPEC,
    releases.RELEASES,
    releases.LEAD_TIME,
)
"""Every served metric (`GET /api/v1/metrics`)."""


def _check() -> None:
    tables = [t.name for w in WRITERS for t in w.tables]
    twice = sorted({t for t in tables if tables.count(t) > 1})
    if twice:
        raise ValueError(f"metric tables written by two writers: {twice}")
    names = [s.name for s in SPECS]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"metrics declared twice: {twice}")
    unlisted = {s.writer.name for s in SPECS if s.writer is not None} - {w.name for w in WRITERS}
    if unlisted:
        raise ValueError(f"writers of served metrics missing from WRITERS: {sorted(unlisted)}")


_check()
