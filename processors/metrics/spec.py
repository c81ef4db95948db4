"""The typed spec of a metric: what it writes per event, how it is read, its parameters (pure).

Two kinds of value, gathered in one explicit registry (processors/metrics/registry.py):

* a `Writer` is what the sink does with each event: the additive tables a module maintains
  (`MetricTable`), the `fold` that merges one event into a batch's rows, and the pure delta
  function (`oracle`) the fold must equal (tests hold them equal; retraction and rebuilds use
  the fold, negated or not, never a second implementation);
* a `MetricSpec` is one served metric: its name, one-line definition, unit, version, the
  tables it reads (`sources`), its query parameters (`Param`: type, default, bounds, meaning)
  and, for the metrics served by the generic routes, how a result is read and derived.

The catalogue (`GET /api/v1/metrics`), the routes' query parameters, their validation and
their OpenAPI text are all generated from these values, so a bound is declared once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metre.contracts.events import CommitEvent
from metre.processors.metrics import Fold, Metric, Rows

if TYPE_CHECKING:
    from metre.processors.metrics.table import MetricTable

Reader = Callable[[Any, list[int], Mapping[str, Any]], Awaitable[dict[str, Any]]]
"""(store, repository ids, the request's resolved parameters) -> the result's body, summed
over the repositories (without `repo_id`: the route adds it)."""

Resolver = Callable[[Mapping[str, Any]], dict[str, Any]]
"""The query's values -> the parameters the result is computed with and stamped with (e.g.
the merge policy resolved from its preset); 422 via ValueError."""

JSON_TYPES = frozenset({"integer", "string", "boolean", "date"})


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter of a metric.

    `default` is the value used when the parameter is omitted, as the catalogue shows it;
    `optional` parameters are None when omitted (the query's default), and the metric derives
    the effective value (`default`) from the others (merges from the policy preset, say).
    `ge`/`le` bound integers, `min_length`/`max_length` strings; `choices` close a string.
    """

    name: str
    type: str
    default: Any
    description: str
    choices: tuple[Any, ...] | None = None
    ge: int | None = None
    le: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    optional: bool = False

    def __post_init__(self) -> None:
        if self.type not in JSON_TYPES:
            raise ValueError(f"parameter {self.name!r}: unknown type {self.type!r}")

    @property
    def query_default(self) -> Any:
        """What the query parameter is when omitted."""
        return None if self.optional else self.default

    def json(self) -> dict[str, Any]:
        bounds = {"minimum": self.ge, "maximum": self.le}
        lengths = {"min_length": self.min_length, "max_length": self.max_length}
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "description": self.description,
            **({"choices": list(self.choices)} if self.choices is not None else {}),
            **{k: v for k, v in {**bounds, **lengths}.items() if v is not None},
        }


@dataclass(frozen=True, slots=True)
class Writer:
    """The additive tables one module maintains, and how one event folds into them.

    `fold` merges an event straight into a batch's `Rows` (the hot path, without `Delta`
    objects); without one, the oracle's deltas are folded through the tables' own `fold`.
    `oracle` is the pure definition, one `Delta` per row an event changes. `rebuilt_at` lists
    the migrations after which its tables are emptied and every stored commit folded into
    them again (processors/rebuild.py): the one that creates them, so a new metric counts the
    history already ingested, and any that changes them in a way SQL cannot derive.
    """

    name: str
    tables: tuple[MetricTable, ...]
    oracle: Metric
    fold: Fold | None = None
    rebuilt_at: tuple[int, ...] = ()

    @property
    def folder(self) -> Fold:
        """The fold the sink, retraction and rebuilds run: `fold`, or the oracle's deltas."""
        if self.fold is not None:
            return self.fold
        by_name = {t.name: t for t in self.tables}
        oracle = self.oracle

        def fold_deltas(e: CommitEvent, rows: Rows) -> None:
            for d in oracle(e):
                by_name[d.table].fold(rows[d.table], d)

        return fold_deltas

    @property
    def table_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tables)


def identity(values: Mapping[str, Any]) -> dict[str, Any]:
    """The default `Resolver`: the query's values as they are."""
    return dict(values)


@dataclass(frozen=True, slots=True)
class Route:
    """How the generic routes serve a metric (api/routes/metrics.py): `read` computes a
    result; `summary` is the OpenAPI summary and `response` the name of the response model
    in api/schemas.py (`org_*` for the organisation-wide form: the same when None); `people`
    says whether the result depends on the identities (its cache moves with them). `table`
    names the result's list the CSV form is a table of, `columns` its columns (dotted for a
    nested object: api/csvexport.py); the metrics older than this declare theirs there.
    """

    summary: str
    read: Reader
    response: str | None = None
    org_summary: str | None = None
    org_response: str | None = None
    people: bool = False
    table: str | None = None
    columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One served metric.

    `sources` are the tables it reads (a metric-update event lists the metrics whose sources a
    batch changed); `writer` is the `Writer` of the tables it owns, None when it derives its
    result from other metrics' tables or from the facts. `org` says whether the
    organisation-wide form `/api/v1/metrics/<name>?repos=` exists. `route` is set when the
    generic routes serve it; metrics with a hand-written route (files, coupling, ...) take
    their parameters from `params` all the same.
    """

    name: str
    definition: str
    unit: str
    version: int
    sources: tuple[str, ...]
    params: tuple[Param, ...] = field(default=())
    org: bool = False
    writer: Writer | None = None
    resolve: Resolver = identity
    route: Route | None = None

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"metric {self.name!r}: a parameter is declared twice")
        if self.writer is not None:
            missing = self.writer.table_names - set(self.sources)
            if missing:
                raise ValueError(f"metric {self.name!r} writes {sorted(missing)} unread")

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables it reads (the catalogue's `sources`)."""
        return self.sources

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "definition": self.definition,
            "unit": self.unit,
            "version": self.version,
            "parameters": [p.json() for p in self.params],
            "organisation_wide": self.org,
            "sources": list(self.sources),
        }
