"""Metric results as CSV (pure): which rows each metric's table has, how a nested value
becomes columns, and whether a request asked for CSV.

A metric's JSON body is a document; its CSV is the one table in it (docs/metrics.md,
"CSV export"), with the rest of the body in response headers (api/provenance.py):

- The table's rows are the metric's list (activity's `series`, authors' `authors`, ...); the
  punch card becomes one row per weekday and hour; commit size one row per measure and
  histogram bin; the truck factor is one row per author removed.
- A nested object becomes dotted columns (`percentiles.p50`); a nested list of objects
  becomes one row per element (`authors.email`, `authors.doa`: the row's other cells
  repeated; an empty list leaves one row with those cells empty); any other list is one cell
  of JSON text (hotspots' `authors`).
- Cells: null is empty, booleans `true`/`false`, numbers and strings as in the JSON body.
- The columns of each metric are fixed (`columns`), so an empty result still has its header.
  RFC 4180 quoting and CRLF line ends (Python's csv module, "excel" dialect), UTF-8.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from metre.processors.metrics.catalogue import catalogue

__all__ = [
    "CSV_MEDIA_TYPE",
    "TABLES",
    "export",
    "flatten",
    "render",
    "summary",
    "table",
    "wants_csv",
]

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Table:
    """A metric's table: its rows taken from the JSON result, and its columns."""

    key: str | None
    """The result's field holding the rows (None: `rows` builds them)."""
    columns: tuple[str, ...]
    rows: Callable[[Mapping[str, Any]], list[Row]] | None = None
    built_from: tuple[str, ...] = ()
    """The result's fields `rows` reads (with `key`: that one)."""

    @property
    def owns(self) -> tuple[str, ...]:
        """The result's fields the table holds (the others go in a header)."""
        return (self.key,) if self.key is not None else self.built_from

    def of(self, result: Mapping[str, Any]) -> list[Row]:
        if self.rows is not None:
            return self.rows(result)
        assert self.key is not None
        found = result.get(self.key)
        return list(found) if isinstance(found, list) else []


def _punchcard(result: Mapping[str, Any]) -> list[Row]:
    grid = result.get("commits") or []
    return [
        {"weekday": day, "hour": hour, "commits": n}
        for day, hours in enumerate(grid)
        for hour, n in enumerate(hours)
    ]


def _commit_size(result: Mapping[str, Any]) -> list[Row]:
    return [
        {"measure": m, **result[m]} for m in ("files", "lines") if isinstance(result.get(m), dict)
    ]


def _truck_factor(result: Mapping[str, Any]) -> list[Row]:
    return [{k: result.get(k) for k in ("truck_factor", "files", "removed")}]


_PERCENTILES = tuple(f"percentiles.p{p}" for p in (50, 75, 90, 99))
_LEAD_TIME = tuple(f"lead_time.p{p}" for p in (50, 75, 90))

TABLES: dict[str, Table] = {
    "activity": Table("series", ("period", "commits", "merges", "added", "removed")),
    "authors": Table(
        "authors",
        ("name", "email", "commits", "added", "removed", "first_commit_at", "last_commit_at"),
    ),
    "contributors": Table("series", ("period", "active", "new", "returning", "cumulative")),
    "punchcard": Table(None, ("weekday", "hour", "commits"), _punchcard, ("commits",)),
    "commit-size": Table(
        None,
        (
            "measure",
            "commits",
            "mean",
            *_PERCENTILES,
            "histogram.min",
            "histogram.max",
            "histogram.commits",
        ),
        _commit_size,
        ("files", "lines"),
    ),
    "languages": Table("languages", ("language", "changes", "added", "removed", "lines", "bytes")),
    "files": Table(
        "files",
        (
            "path",
            "commits",
            "added",
            "removed",
            "lines",
            "exists",
            "binary",
            "last_change_at",
            "authors",
            "bytes",
            "binary_at_head",
            "code_lines",
        ),
    ),
    "hotspots": Table("files", ("path", "changes", "lines", "code_lines", "score", "authors")),
    "ownership": Table("files", ("path", "authors.email", "authors.doa")),
    "truck-factor": Table(
        None,
        ("truck_factor", "files", "removed.email", "removed.files"),
        _truck_factor,
        ("truck_factor", "files", "removed"),
    ),
    "coupling": Table("pairs", ("a", "b", "shared", "commits_a", "commits_b", "degree")),
    "releases": Table(
        "releases",
        (
            "tag",
            "sha",
            "time",
            "annotated",
            "commits",
            "merges",
            "added",
            "removed",
            *_LEAD_TIME,
        ),
    ),
    "lead-time": Table("series", ("period", "releases", "commits", *_LEAD_TIME)),
}
_PARTNERS = Table("partners", ("path", "shared", "commits", "degree"))
"""Coupling with `path=`: the partners of one file."""


def table(metric: str, result: Mapping[str, Any]) -> Table:
    """The table of `metric` for this result (coupling has two forms); a metric not listed
    here declares its table in its spec's route (processors/metrics/spec.py)."""
    if metric == "coupling" and "partners" in result:
        return _PARTNERS
    found = TABLES.get(metric)
    if found is not None:
        return found
    route = catalogue()[metric].route
    if route is None or route.table is None:
        raise KeyError(f"metric {metric!r} declares no CSV table")
    return Table(route.table, route.columns)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return str(value)


def flatten(obj: Mapping[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """One JSON object as CSV rows (see the module): a nested object's fields join the row
    under dotted names, a nested list of objects gives one row per element (two such lists
    would give every combination; no metric has two), any other value is one cell."""
    rows: list[dict[str, str]] = [{}]
    for key, value in obj.items():
        name = prefix + key
        if isinstance(value, dict):
            parts = flatten(value, name + ".")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts = [r for v in value for r in flatten(v, name + ".")]
        else:
            parts = [{name: _cell(value)}]
        rows = [{**r, **p} for r in rows for p in parts]
    return rows


def render(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> bytes:
    """The CSV bytes of `rows` under a header of `columns` (cells missing from a row are
    empty; a column no row has stays empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, dialect="excel")
    writer.writerow(columns)
    for row in rows:
        for flat in flatten(row):
            writer.writerow([flat.get(c, "") for c in columns])
    return buf.getvalue().encode()


def _header_json(value: Any) -> str:
    """JSON fit for a header value: ASCII only, no control characters (all escaped)."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def export(metric: str, result: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A metric's JSON result (as served, provenance included) as CSV bytes and the headers
    that carry what is not in the table: X-Metre-Provenance (the body's `provenance`, JSON),
    X-Metre-Summary (the other fields outside the table, JSON), and for convenience
    X-Metre-Metric, X-Metre-Version and, for one repository, X-Metre-Repo, X-Metre-Head and
    X-Metre-Watermark."""
    t = table(metric, result)
    body = render(t.of(result), t.columns)
    prov = result.get("provenance") or {}
    headers = {
        "X-Metre-Metric": metric,
        "X-Metre-Version": str(prov.get("version", "")),
        "X-Metre-Provenance": _header_json(prov),
        "X-Metre-Summary": _header_json(summary(metric, result)),
    }
    if prov.get("repo_id") is not None:
        headers["X-Metre-Repo"] = str(prov["repo_id"])
        headers["X-Metre-Head"] = prov.get("head") or ""
        headers["X-Metre-Watermark"] = prov.get("watermark") or ""
    name = f"{metric}-{prov['repo_id']}" if prov.get("repo_id") is not None else metric
    headers["Content-Disposition"] = f'inline; filename="{name}.csv"'
    return body, headers


def summary(metric: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The result's fields outside its table and provenance (sent in a header)."""
    owned = {"provenance", *table(metric, result).owns}
    return {k: v for k, v in result.items() if k not in owned}


def _accepts(accept: str) -> dict[str, float]:
    """Media range -> q of an Accept header (malformed q values count as 0)."""
    out: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for p in params:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        out[media.lower()] = max(q, out.get(media.lower(), 0.0))
    return out


def _quality(ranges: Mapping[str, float], media: str) -> float:
    kind = media.split("/")[0]
    for candidate in (media, f"{kind}/*", "*/*"):  # the most specific range decides
        if candidate in ranges:
            return ranges[candidate]
    return 0.0


def wants_csv(accept: str | None, format_: str | None) -> bool:
    """Whether to answer CSV: `format=csv`, or (without `format`) an Accept header that
    prefers text/csv to application/json. `format` must be json or csv (ValueError)."""
    if format_ is not None:
        if format_ not in ("json", "csv"):
            raise ValueError("format must be json or csv")
        return format_ == "csv"
    if not accept:
        return False
    ranges = _accepts(accept)
    return _quality(ranges, "text/csv") > _quality(ranges, "application/json")


def _is_metric_path(path: str) -> bool:
    """A metric endpoint: `/api/v1/repos/{repo_id}/metrics/<name>` or `/api/v1/metrics/<name>`
    (not the catalogue `/api/v1/metrics` itself)."""
    return "/metrics/" in path


FORMAT_PARAMETER: dict[str, Any] = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": "csv: the result as CSV (as `Accept: text/csv`), provenance in X-Metre-* "
    "headers; json (default)",
    "schema": {"type": "string", "enum": ["json", "csv"]},
}


def document(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the CSV representation and the `format` parameter to every metric endpoint of an
    OpenAPI document (in place; returned for chaining)."""
    for path, operations in openapi.get("paths", {}).items():
        if not _is_metric_path(path):
            continue
        for op in operations.values():
            params = op.setdefault("parameters", [])
            if not any(p.get("name") == "format" for p in params):
                params.append(FORMAT_PARAMETER)
            ok = op.get("responses", {}).get("200")
            if ok is not None:
                ok.setdefault("content", {})["text/csv"] = {
                    "schema": {"type": "string", "description": "RFC 4180 CSV, UTF-8"}
                }
    return openapi
