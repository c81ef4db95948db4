"""The metric catalogue: what each served metric means, its unit, parameters and version (pure).

Each metric declares a `MetricSpec` (processors/metrics/spec.py) listed in the registry; the
API lists them at `GET /api/v1/metrics` and stamps every result with the spec's version and
the parameters used. Bump `version` whenever a metric's definition changes: it is part of every
ETag, so clients never keep a result computed under an older definition.
"""

from __future__ import annotations

import functools

from metre.processors.metrics.spec import MetricSpec, Param

__all__ = ["BOTS", "GRANULARITY", "INT32_MAX", "Param", "catalogue", "metrics_of_tables"]


INT32_MAX = 2**31 - 1
"""The largest offset or count a query takes (PostgreSQL's integer)."""

GRANULARITY = Param(
    "granularity", "string", "day", "period length: UTC days, ISO weeks, months",
    ("day", "week", "month"),
)  # fmt: skip


BOTS = Param(
    "bots", "string", "include",
    "individuals flagged as bots (well-known patterns, or PUT /api/v1/identities/{id}/bot) "
    "counted (include) or left out (exclude)", ("include", "exclude"),
)  # fmt: skip
"""People metrics count individuals (emails regrouped through the identities, processors/
people.py) and take this parameter."""


@functools.cache
def catalogue() -> dict[str, MetricSpec]:
    """Every served metric of the registry (processors/metrics/registry.py), by name."""
    from metre.processors.metrics.registry import SPECS

    return {s.name: s for s in sorted(SPECS, key=lambda s: s.name)}


def metrics_of_tables(tables: set[str]) -> list[str]:
    """Names of the entries that read any of `tables`, sorted."""
    return sorted(e.name for e in catalogue().values() if tables.intersection(e.tables))
