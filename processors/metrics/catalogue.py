"""The metric catalogue: what each served metric means, its unit, parameters and version (pure).

Entries are declared next to each metric (a module's `ENTRIES`) and gathered here; the API
lists them at `GET /api/v1/metrics` and stamps every result with the entry's version and the
parameters used. Bump `version` whenever a metric's definition changes: it is part of every
ETag, so clients never keep a result computed under an older definition.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from processors.metrics.spec import MetricSpec, Param, Writer

__all__ = ["BOTS", "GRANULARITY", "INT32_MAX", "Entry", "Param", "catalogue", "metrics_of_tables"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One served metric. `tables` are the additive tables it reads (a metric-update event
    lists the entries whose tables a batch changed); `org` says whether the organisation-wide
    form `/api/v1/metrics/<name>?repos=` exists."""

    name: str
    definition: str
    unit: str
    version: int
    tables: tuple[str, ...]
    params: tuple[Param, ...] = field(default=())
    org: bool = False

    def spec(self, writer: Writer | None = None) -> MetricSpec:
        """The entry as a `MetricSpec` (while its module is not moved to one)."""
        return MetricSpec(
            self.name, self.definition, self.unit, self.version, self.tables, self.params,
            self.org, writer,
        )  # fmt: skip

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "definition": self.definition,
            "unit": self.unit,
            "version": self.version,
            "parameters": [
                {
                    "name": p.name,
                    "type": p.type,
                    "default": p.default,
                    "description": p.description,
                    **({"choices": list(p.choices)} if p.choices is not None else {}),
                }
                for p in self.params
            ],
            "organisation_wide": self.org,
            "sources": list(self.tables),
        }


INT32_MAX = 2**31 - 1
"""The largest offset or count a query takes (PostgreSQL's integer)."""

GRANULARITY = Param(
    "granularity", "string", "day", "period length: UTC days, ISO weeks, months",
    ("day", "week", "month"),
)  # fmt: skip


BOTS = Param(
    "bots", "string", "include",
    "individuals flagged as bots (well-known patterns, or set by the identities API) counted "
    "or left out", ("include", "exclude"),
)  # fmt: skip
"""People metrics count individuals (emails regrouped through the identities, processors/
people.py) and take this parameter."""


@functools.cache
def catalogue() -> dict[str, MetricSpec]:
    """Every served metric of the registry (processors/metrics/registry.py), by name."""
    from processors.metrics.registry import SPECS

    return {s.name: s for s in sorted(SPECS, key=lambda s: s.name)}


def metrics_of_tables(tables: set[str]) -> list[str]:
    """Names of the entries that read any of `tables`, sorted."""
    return sorted(e.name for e in catalogue().values() if tables.intersection(e.tables))
