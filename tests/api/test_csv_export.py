"""CSV export of every metric endpoint, against its own JSON, over the real pipeline.

The expected rows are written out per metric here, from the JSON body, independently of
api/csvexport.py's flattening; the endpoints are taken from the OpenAPI document, so a metric
endpoint added without a CSV table fails here.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from metre.api.csvexport import flatten, render, wants_csv
from testkit.pipeline import Pipeline

pytestmark = pytest.mark.integration


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | dict):
        return orjson.dumps(v).decode()
    return str(v)


def _rows(*cells: Any) -> list[str]:
    return [_cell(c) for c in cells]


def _expected(metric: str, body: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) the CSV of `body` must have, spelled out per metric."""
    if metric == "activity":
        cols = ["period", "commits", "merges", "added", "removed"]
        return cols, [_rows(*(p[c] for c in cols)) for p in body["series"]]
    if metric == "contributors":
        cols = ["period", "active", "new", "returning", "cumulative"]
        return cols, [_rows(*(p[c] for c in cols)) for p in body["series"]]
    if metric == "authors":
        cols = ["name", "email", "commits", "added", "removed", "first_commit_at"]
        cols.append("last_commit_at")
        return cols, [_rows(*(a[c] for c in cols)) for a in body["authors"]]
    if metric == "punchcard":
        rows = [
            _rows(d, h, n) for d, hours in enumerate(body["commits"]) for h, n in enumerate(hours)
        ]
        return ["weekday", "hour", "commits"], rows
    if metric == "commit-size":
        cols = ["measure", "commits", "mean", "percentiles.p50", "percentiles.p75"]
        cols += ["percentiles.p90", "percentiles.p99", "histogram.min", "histogram.max"]
        cols.append("histogram.commits")
        rows = []
        for m in ("files", "lines"):
            d = body[m]
            head = [
                m,
                d["commits"],
                d["mean"],
                *(d["percentiles"][f"p{p}"] for p in (50, 75, 90, 99)),
            ]
            bins = d["histogram"] or [{"min": None, "max": None, "commits": None}]
            rows += [_rows(*head, b["min"], b["max"], b["commits"]) for b in bins]
        return cols, rows
    if metric == "languages":
        cols = ["language", "changes", "added", "removed", "lines", "bytes"]
        return cols, [_rows(*(x[c] for c in cols)) for x in body["languages"]]
    if metric == "files":
        cols = ["path", "commits", "added", "removed", "lines", "exists", "binary"]
        cols += ["last_change_at", "authors", "bytes", "binary_at_head", "code_lines"]
        return cols, [_rows(*(f[c] for c in cols)) for f in body["files"]]
    if metric == "hotspots":
        cols = ["path", "changes", "lines", "code_lines", "score", "authors"]
        return cols, [_rows(*(f[c] for c in cols)) for f in body["files"]]
    if metric == "ownership":
        rows = [_rows(f["path"], a["email"], a["doa"]) for f in body["files"] for a in f["authors"]]
        return ["path", "authors.email", "authors.doa"], rows
    if metric == "truck-factor":
        cols = ["truck_factor", "files", "removed.email", "removed.files"]
        removed = body["removed"] or [{"email": None, "files": None}]
        return cols, [
            _rows(body["truck_factor"], body["files"], r["email"], r["files"]) for r in removed
        ]
    lead = ["lead_time.p50", "lead_time.p75", "lead_time.p90"]
    if metric == "releases":
        cols = ["tag", "sha", "time", "annotated", "commits", "merges", "added", "removed"]
        return cols + lead, [
            _rows(*(r[c] for c in cols), *(r["lead_time"][f"p{p}"] for p in (50, 75, 90)))
            for r in body["releases"]
        ]
    if metric == "lead-time":
        cols = ["period", "releases", "commits"]
        return cols + lead, [
            _rows(*(r[c] for c in cols), *(r["lead_time"][f"p{p}"] for p in (50, 75, 90)))
            for r in body["series"]
        ]
    if metric == "coupling" and "partners" in body:
        cols = ["path", "shared", "commits", "degree"]
        return cols, [_rows(*(p[c] for c in cols)) for p in body["partners"]]
    assert metric == "coupling", metric
    cols = ["a", "b", "shared", "commits_a", "commits_b", "degree"]
    return cols, [_rows(*(p[c] for c in cols)) for p in body["pairs"]]


_OUTSIDE = {
    # The body's fields the table holds (the rest go in X-Metre-Summary).
    "activity": {"series"},
    "contributors": {"series"},
    "authors": {"authors"},
    "punchcard": {"commits"},
    "commit-size": {"files", "lines"},
    "languages": {"languages"},
    "files": {"files"},
    "hotspots": {"files"},
    "ownership": {"files"},
    "truck-factor": {"truck_factor", "files", "removed"},
    "coupling": {"pairs", "partners"},
    "releases": {"releases"},
    "lead-time": {"series"},
}


async def _check(api: Pipeline, url: str, params: dict[str, Any]) -> int:
    """The CSV of `url` equals its JSON; returns the rows compared."""
    c = api.client
    r = await c.get(url, params=params)
    assert r.status_code == 200, (url, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    metric = body["provenance"]["metric"]

    by_format = await c.get(url, params={**params, "format": "csv"})
    by_accept = await c.get(url, params=params, headers={"accept": "text/csv"})
    for got in (by_format, by_accept):
        assert got.status_code == 200, (url, got.text)
        assert got.headers["content-type"] == "text/csv; charset=utf-8"
        assert got.headers["vary"] == "Accept"
    assert by_format.content == by_accept.content
    assert by_format.headers["etag"] == by_accept.headers["etag"] != r.headers["etag"]

    table = list(csv.reader(io.StringIO(by_format.content.decode("utf-8"), newline="")))
    header, rows = _expected(metric, body)
    assert table[0] == header, url
    assert table[1:] == rows, url
    assert by_format.content.endswith(b"\r\n")

    h = by_format.headers
    assert orjson.loads(h["x-metre-provenance"]) == body["provenance"]
    summary = {k: v for k, v in body.items() if k != "provenance" and k not in _OUTSIDE[metric]}
    assert orjson.loads(h["x-metre-summary"]) == summary
    assert h["x-metre-metric"] == metric
    assert h["x-metre-version"] == str(body["provenance"]["version"])
    if "repo_id" in body["provenance"]:
        assert h["x-metre-repo"] == str(body["provenance"]["repo_id"])
        assert h["x-metre-head"] == body["provenance"]["head"]
        assert h["x-metre-watermark"] == body["provenance"]["watermark"]

    # Revalidation per representation: the CSV's tag gives 304, the JSON's tag does not.
    again = await c.get(
        url, params={**params, "format": "csv"}, headers={"if-none-match": h["etag"]}
    )
    assert again.status_code == 304
    assert again.headers["etag"] == h["etag"]
    other = await c.get(
        url, params={**params, "format": "csv"}, headers={"if-none-match": r.headers["etag"]}
    )
    assert other.status_code == 200
    return len(rows)


async def test_every_metric_endpoint_answers_csv_equal_to_its_json(
    metre_api: Pipeline, awkward_repo: Path, random_repo: Path
) -> None:
    a = await metre_api.ingest(awkward_repo)
    b = await metre_api.ingest(random_repo)
    files = (await metre_api.client.get(f"/api/v1/repos/{b}/metrics/files")).json()["files"]
    some_path = files[0]["path"]
    cases: list[tuple[str, dict[str, Any]]] = []
    for rid in (a, b):
        base = f"/api/v1/repos/{rid}/metrics"
        for g in ("day", "week", "month"):
            cases.append((f"{base}/activity", {"granularity": g}))
            cases.append((f"{base}/contributors", {"granularity": g, "gap_days": 3}))
        for name in ("authors", "punchcard", "commit-size", "languages", "ownership"):
            cases.append((f"{base}/{name}", {}))
        cases += [
            (f"{base}/truck-factor", {}),
            (f"{base}/files", {"sort": "lines", "limit": 1000}),
            (f"{base}/files", {"exists": "false"}),
            (f"{base}/hotspots", {"days": 36500}),
            (f"{base}/coupling", {"min_shared": 1, "limit": 1000}),
            (f"{base}/coupling", {"path": some_path, "min_shared": 1}),
            (f"{base}/releases", {}),
        ]
        for g in ("day", "week", "month"):
            cases.append((f"{base}/lead-time", {"granularity": g}))
    # A non-ASCII parameter: the provenance header escapes it (headers are Latin-1 at most).
    cases.append((f"/api/v1/repos/{a}/metrics/coupling", {"path": "na\u00efve/\u00fc.txt"}))
    for name in ("activity", "contributors", "punchcard", "commit-size", "languages"):
        cases.append((f"/api/v1/metrics/{name}", {}))
        cases.append((f"/api/v1/metrics/{name}", {"repos": f"{a},{b}"}))
    rows = 0
    for url, params in cases:
        rows += await _check(metre_api, url, params)
    assert rows > 1000  # the histories are not trivial

    # Every metric endpoint of the OpenAPI document was exercised, and says it speaks CSV.
    doc = (await metre_api.client.get("/openapi.json")).json()
    metric_paths = {p for p in doc["paths"] if "/metrics/" in p}
    templated = {u.replace(f"/repos/{a}/", "/repos/{repo_id}/") for u, _ in cases}
    templated = {u.replace(f"/repos/{b}/", "/repos/{repo_id}/") for u in templated}
    assert metric_paths == templated
    for p in metric_paths:
        op = doc["paths"][p]["get"]
        assert "text/csv" in op["responses"]["200"]["content"], p
        assert any(x["name"] == "format" for x in op["parameters"]), p
    assert "text/csv" not in str(doc["paths"]["/api/v1/repos/{repo_id}"])


async def test_empty_results_keep_their_header_and_bad_formats_are_refused(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    from tests.fixtures.gitrepo import GitRepoBuilder

    repo = GitRepoBuilder(tmp_path / "one")
    repo.write("bin.dat", b"\x00\x01")
    repo.commit("only a binary file")
    rid = await metre_api.ingest(repo.path)
    c = metre_api.client
    r = await c.get(f"/api/v1/repos/{rid}/metrics/hotspots", params={"format": "csv"})
    assert r.status_code == 200
    assert r.content == b"path,changes,lines,code_lines,score,authors\r\n"
    r = await c.get(f"/api/v1/repos/{rid}/metrics/truck-factor", params={"format": "csv"})
    assert r.status_code == 200
    assert r.text.splitlines()[0] == "truck_factor,files,removed.email,removed.files"
    r = await c.get(f"/api/v1/repos/{rid}/metrics/authors", params={"format": "xml"})
    assert r.status_code == 422
    assert "format must be json or csv" in r.json()["error"]["message"]
    r = await c.get("/api/v1/repos/999/metrics/authors", params={"format": "csv"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")  # errors stay JSON
    prefers_json = {"accept": "application/json, text/csv;q=0.5"}
    r = await c.get(f"/api/v1/repos/{rid}/metrics/authors", headers=prefers_json)
    assert r.headers["content-type"].startswith("application/json")


def test_negotiation() -> None:
    assert not wants_csv(None, None)
    assert not wants_csv("*/*", None)
    assert wants_csv("text/csv", None)
    assert wants_csv("text/csv, application/json;q=0.9", None)
    assert not wants_csv("application/json, text/csv;q=0.9", None)
    assert wants_csv("text/*, application/json;q=0.1", None)
    assert not wants_csv("text/csv;q=0", None)
    assert not wants_csv("text/csv;q=oops", None)
    assert wants_csv("application/json", "csv")
    assert not wants_csv("text/csv", "json")
    with pytest.raises(ValueError, match="json or csv"):
        wants_csv(None, "xml")


def test_flattening_rules() -> None:
    row = {"p": "a,b", "n": None, "t": True, "w": {"from": "x", "days": 3}, "l": ["u", "v"]}
    assert flatten(row) == [
        {"p": "a,b", "n": "", "t": "true", "w.from": "x", "w.days": "3", "l": '["u","v"]'}
    ]
    nested = {"path": "f", "authors": [{"email": "a", "doa": 1.5}, {"email": "b", "doa": 2}]}
    assert flatten(nested) == [
        {"path": "f", "authors.email": "a", "authors.doa": "1.5"},
        {"path": "f", "authors.email": "b", "authors.doa": "2"},
    ]
    out = render([{"a": 'say "hi"\nthere', "b": "é"}], ["a", "b", "c"])
    assert out == 'a,b,c\r\n"say ""hi""\nthere",é,\r\n'.encode()
