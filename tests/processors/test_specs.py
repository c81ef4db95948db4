"""The metric specs against what is generated from them and what the migrations built: the
schema of a migrated database (real PostgreSQL), the routes' parameters in the OpenAPI
document, the catalogue; and retraction's negated fold against the fold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metre.api.app import create_app
from metre.contracts.events import CommitEvent
from metre.processors.metrics import FOLDS, TABLES, WRITER_OF, fold
from metre.processors.metrics.catalogue import catalogue
from metre.processors.metrics.registry import SPECS, WRITERS
from metre.processors.metrics.spec import MetricSpec
from metre.processors.store import PgStore
from metre.settings import Settings
from tests.processors.test_fold import _events

_PG_TYPES = {
    "bigint": "bigint",
    "smallint": "smallint",
    "text": "text",
    "date": "date",
    "boolean": "boolean",
    "timestamptz": "timestamp with time zone",
}

_COLUMNS = """
SELECT column_name, data_type, is_nullable FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = $1
"""
_PRIMARY_KEY = """
SELECT k.column_name
FROM information_schema.table_constraints c
JOIN information_schema.key_column_usage k
  ON k.constraint_name = c.constraint_name AND k.table_schema = c.table_schema
WHERE c.table_schema = current_schema() AND c.table_name = $1
  AND c.constraint_type = 'PRIMARY KEY'
ORDER BY k.ordinal_position
"""


@pytest.mark.integration
async def test_the_migrated_schema_has_every_spec_table(store: PgStore) -> None:
    """Each spec's table exists with its columns, their types and its key as primary key
    (the upsert's ON CONFLICT needs exactly that key), counters never null."""
    async with store.pool.acquire() as con:
        for name, spec in TABLES.items():
            cols = {r["column_name"]: r for r in await con.fetch(_COLUMNS, name)}
            assert cols, f"{name}: no such table after the migrations"
            for c in spec.columns:
                assert c.name in cols, f"{name}.{c.name} missing"
                assert cols[c.name]["data_type"] == _PG_TYPES[c.sql_type], f"{name}.{c.name}"
            for counter in spec.counters:
                assert cols[counter]["is_nullable"] == "NO", f"{name}.{counter} nullable"
            key = [r["column_name"] for r in await con.fetch(_PRIMARY_KEY, name)]
            assert key == [c.name for c in spec.key], name


def test_the_registry_lists_each_table_and_name_once() -> None:
    tables = [t.name for w in WRITERS for t in w.tables]
    assert len(tables) == len(set(tables)) == len(TABLES)
    assert sorted(catalogue()) == sorted(s.name for s in SPECS)
    assert len(FOLDS) == len(WRITERS)
    for spec in SPECS:
        if spec.writer is not None:
            assert WRITER_OF[spec.writer.tables[0].name] is spec.writer
            assert set(spec.writer.table_names) <= set(spec.sources)


def test_a_spec_refuses_what_it_cannot_serve() -> None:
    with pytest.raises(ValueError, match="twice"):
        MetricSpec("x", "d", "u", 1, (), params=(SPECS[0].params[0], SPECS[0].params[0]))
    writer = SPECS[0].writer
    assert writer is not None
    with pytest.raises(ValueError, match="unread"):
        MetricSpec("x", "d", "u", 1, (), writer=writer)


def _openapi() -> dict[str, Any]:
    return create_app(Settings(data_dir=Path("/nonexistent-metre"))).openapi()


def _query_params(op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for p in op.get("parameters", []):
        if p["in"] == "query" and p["name"] not in ("format", "repos"):
            out[p["name"]] = p
    return out


def _schema(p: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = p["schema"]
    return next((a for a in s.get("anyOf", []) if a.get("type") != "null"), s)


def test_routes_take_exactly_the_spec_parameters_with_their_bounds() -> None:
    """The OpenAPI document of every metric route lists the spec's parameters, no others,
    with the spec's defaults, bounds and choices: they are declared once."""
    doc = _openapi()
    seen = 0
    for spec in SPECS:
        paths = [f"/api/v1/repos/{{repo_id}}/metrics/{spec.name}"]
        if spec.org and spec.route is not None:
            paths.append(f"/api/v1/metrics/{spec.name}")
        for path in paths:
            got = _query_params(doc["paths"][path]["get"])
            assert list(got) == [p.name for p in spec.params], path
            for p in spec.params:
                schema = _schema(got[p.name])
                assert schema.get("minimum") == p.ge, (path, p.name)
                assert schema.get("maximum") == p.le, (path, p.name)
                assert schema.get("minLength") == p.min_length, (path, p.name)
                assert schema.get("maxLength") == p.max_length, (path, p.name)
                assert schema.get("enum") == (list(p.choices) if p.choices else None)
                assert got[p.name]["schema"].get("default") == p.query_default, (path, p.name)
                assert got[p.name]["description"] == p.description
            seen += 1
    assert seen == len(SPECS) + sum(1 for s in SPECS if s.org and s.route is not None)


def test_catalogue_bounds_are_the_spec_bounds() -> None:
    for spec in SPECS:
        for p, j in zip(spec.params, spec.json()["parameters"], strict=True):
            assert j["name"] == p.name
            assert j.get("minimum") == p.ge
            assert j.get("maximum") == p.le


@settings(max_examples=200, deadline=None)
@given(st.lists(_events(), max_size=20), st.data())
def test_the_negated_fold_undoes_the_fold(events: list[CommitEvent], data: st.DataObject) -> None:
    """What retraction upserts (each folded row, negated) cancels the counters of a fresh
    ingest of the same events, row by row; a subset's negation leaves the rest's rows."""
    gone = data.draw(st.lists(st.sampled_from(events), unique_by=id)) if events else []
    kept = [e for e in events if not any(e is g for g in gone)]
    everything, undo, rest = fold(events), fold(gone), fold(kept)
    for name, spec in TABLES.items():
        n = len(spec.counters)
        summed = {k: list(r[:n]) for k, r in everything.get(name, {}).items()}
        for k, r in undo.get(name, {}).items():
            for i, v in enumerate(spec.negated(r)[:n]):
                summed[k][i] += v
        want = {k: list(r[:n]) for k, r in rest.get(name, {}).items()}
        assert {k: v for k, v in summed.items() if any(v)} == {
            k: v for k, v in want.items() if any(v)
        }, name
