"""Hostile parameters over the real pipeline (dulwich poller, InMemoryBus, processor,
PostgreSQL, the app): text PostgreSQL cannot hold, integers beyond int64, dates at the end of
the calendar, trailing-slash redirects, branches that do not exist. Each answer is a 4xx JSON
(never a 500), and every status an operation answers is listed in the OpenAPI document."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from metre.api.app import create_app
from metre.api.schemas import INT64_MAX, text_problem
from metre.processors.filereads import _days_before
from metre.settings import Settings
from testkit.gitbuilder import GitRepoBuilder
from testkit.pipeline import Pipeline
from tests.api.files_oracle import expected_hotspots

pytestmark = pytest.mark.integration

LAST_DAY = "253402214400 +0000"  # 9999-12-31T00:00:00Z, the last day Python has
LAST_SECOND = "253402300799 +0000"  # 9999-12-31T23:59:59Z


def _commit_at(repo: GitRepoBuilder, message: str, when: str) -> None:
    """Commit the work tree dated `when` (epoch and offset), which `git commit` refuses when
    it is the last day of year 9999: the commit object is written by hand."""
    repo.git("add", "-A")
    tree = repo.git("write-tree").decode().strip()
    who = b"A U Thor <author@example.com> " + when.encode()
    body = (
        f"tree {tree}\nparent {repo.head()}\n".encode()
        + b"author "
        + who
        + b"\ncommitter "
        + who
        + b"\n\n"
        + message.encode()
        + b"\n"
    )
    sha = repo.git("hash-object", "-t", "commit", "-w", "--stdin", stdin=body).decode().strip()
    repo.git("update-ref", "HEAD", sha)


def _small_repo(path: Path, last: str | None = None) -> GitRepoBuilder:
    repo = GitRepoBuilder(path)
    repo.write("a.txt", b"one\ntwo\n")
    repo.write("b.txt", b"x\n")
    repo.commit("first")
    repo.write("a.txt", b"one\ntwo\nthree\n")
    repo.write("b.txt", b"x\ny\n")
    repo.commit("second", date="2021-06-01T12:00:00+0000")
    if last is not None:
        repo.write("a.txt", b"one\n")
        repo.write("c.txt", b"c\n")
        _commit_at(repo, "at the end of time", last)
        repo.write("b.txt", b"x\ny\nz\n")
        _commit_at(repo, "a second later", LAST_SECOND)
    return repo


def _assert_error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["error"]["status"] == status
    assert body["error"]["message"].strip()
    return body


def test_text_problem_names_what_postgresql_cannot_hold() -> None:
    assert text_problem("plain/path.txt") is None
    assert text_problem("caf\u00e9 \U0001f600") is None
    assert text_problem("a\x00b") == "contains a NUL character"
    assert "surrogate" in (text_problem("\ud800") or "")


async def test_nul_and_surrogates_in_any_string_are_422(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    rid = await metre_api.ingest(_small_repo(tmp_path / "r").path)
    c = metre_api.client
    for query in ("path=%00", "path=a%00b", "path=a.txt&x%00=1"):
        r = await c.get(f"/api/v1/repos/{rid}/metrics/coupling?{query}")
        body = _assert_error(r, 422)
        assert "NUL" in body["error"]["message"], body
    body = _assert_error(await c.get(f"/api/v1/repos/{rid}/metrics/coupling?path=%00"), 422)
    assert body["error"]["message"].startswith("path: "), body  # names the parameter
    # every route, not only coupling: an unknown parameter too, and org-wide forms
    for url in ("/api/v1/repos?q=%00", "/api/v1/metrics/punchcard?repos=1%00"):
        _assert_error(await c.get(url), 422)
    # bodies: JSON may carry a NUL or a lone surrogate, neither of which text can hold
    for raw in (b'{"branch": "ma\\u0000in"}', b'{"branch": "\\ud800"}', b'{"branch": "a\\udfffb"}'):
        r = await c.patch(
            f"/api/v1/repos/{rid}", content=raw, headers={"content-type": "application/json"}
        )
        _assert_error(r, 422)
    for raw in (b'{"url": "https://example.org/\\u0000.git"}', b'{"url": "/tmp/\\ud800"}'):
        r = await c.post("/api/v1/repos", content=raw, headers={"content-type": "application/json"})
        _assert_error(r, 422)
    repo = (await c.get(f"/api/v1/repos/{rid}")).json()
    assert repo["branch"] is None  # nothing changed
    assert len((await c.get("/api/v1/repos")).json()["repos"]) == 1
    # a good path still answers
    assert (await c.get(f"/api/v1/repos/{rid}/metrics/coupling?path=a.txt")).status_code == 200


async def test_integers_beyond_int64_are_422(metre_api: Pipeline, tmp_path: Path) -> None:
    rid = await metre_api.ingest(_small_repo(tmp_path / "r").path)
    c = metre_api.client
    for query in (
        f"min_shared={INT64_MAX + 1}",
        f"min_shared={INT64_MAX}",
        "min_shared=99999999999999999999999999",
        f"max_files={INT64_MAX + 1}",
        f"limit={INT64_MAX + 1}",
    ):
        _assert_error(await c.get(f"/api/v1/repos/{rid}/metrics/coupling?{query}"), 422)
    _assert_error(await c.get(f"/api/v1/repos/{INT64_MAX + 1}"), 422)
    _assert_error(await c.get(f"/api/v1/repos/{rid}/metrics/files?offset={INT64_MAX + 1}"), 422)
    r = await c.get(f"/api/v1/repos/{rid}/metrics/coupling?min_shared=2147483647")
    assert r.status_code == 200, r.text


def _integer_schemas(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "integer":
            out.append((where, node))
        for key, value in node.items():
            out += _integer_schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _integer_schemas(value, f"{where}[{i}]")
    return out


def test_every_integer_parameter_has_a_maximum_in_the_schema() -> None:
    doc = create_app(Settings(data_dir=Path("/nonexistent-metre"))).openapi()
    found = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for p in op.get("parameters", []):
                found += _integer_schemas(p["schema"], f"{method} {path} {p['name']}")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref", "")
            if ref:
                model = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
                found += _integer_schemas(model, f"{method} {path} body")
    assert found  # the walk sees the parameters
    for where, schema in found:
        assert "maximum" in schema, where
        assert schema["maximum"] <= INT64_MAX, where


def test_days_before_stops_at_the_first_day() -> None:
    assert _days_before(date(2020, 1, 10), 9) == date(2020, 1, 1)
    assert _days_before(date(1, 1, 10), 36_499) == date.min
    assert _days_before(date.min, 0) == date.min


async def test_a_commit_on_9999_12_31_breaks_no_window(metre_api: Pipeline, tmp_path: Path) -> None:
    repo = _small_repo(tmp_path / "r", last=LAST_DAY).path
    rid = await metre_api.ingest(repo)
    c = metre_api.client
    for days in (1, 2, 365, 36_500):
        r = await c.get(f"/api/v1/repos/{rid}/metrics/hotspots", params={"days": days})
        assert r.status_code == 200, r.text
        first, last, want = expected_hotspots(repo, days)
        body = r.json()
        assert body["window"] == {"from": first.isoformat(), "to": last.isoformat(), "days": days}
        assert last == date.max
        got = [
            {k: f[k] for k in ("path", "changes", "lines", "code_lines", "score", "authors")}
            for f in body["files"]
        ]
        assert got == want
    # every GET of the repository (each derived window and series) answers, none with a 5xx
    doc = create_app(Settings(data_dir=Path("/nonexistent-metre"))).openapi()
    for path, operations in doc["paths"].items():
        if "get" not in operations or "{repo_id}" not in path or path.count("{") > 1:
            continue
        for params in ({}, {"granularity": "week"}, {"granularity": "month"}):
            url = path.replace("{repo_id}", str(rid))
            r = await c.get(url, params=params)
            assert r.status_code in (200, 422), (url, params, r.text)
    for params in ({"granularity": "week"}, {"granularity": "month"}, {}):
        for org in ("activity", "contributors"):
            r = await c.get(f"/api/v1/metrics/{org}", params=params)
            assert r.status_code == 200, r.text
    r = await c.get(f"/api/v1/repos/{rid}/metrics/activity", params={"to": "9999-12-31"})
    assert r.status_code == 200, r.text
    assert r.json()["series"][-1]["period"] == "9999-12-31"
    # dates beyond year 9999 are refused in the schema's own terms
    for bad in ("10000-01-01", "99999-12-31", "253402300800"):
        for name in ("from", "to"):
            r = await c.get(f"/api/v1/repos/{rid}/metrics/activity", params={name: bad})
            _assert_error(r, 422)
            r = await c.get("/api/v1/metrics/activity", params={name: bad})
            _assert_error(r, 422)


async def test_trailing_slash_redirect_never_echoes_the_host(metre_api: Pipeline) -> None:
    c = metre_api.client
    for sent, location in (
        ("/api/v1/repos/", "/api/v1/repos"),
        ("/api/v1/metrics/?x=1", "/api/v1/metrics?x=1"),
        ("/ui", "/ui/"),
    ):
        r = await c.get(sent, headers={"host": "attacker.example"})
        assert r.status_code == 307, r.text
        assert r.headers["location"] == location
        assert "attacker" not in r.text
    _assert_error(await c.get("/nothing/here/", headers={"host": "attacker.example"}), 404)


async def test_patch_to_a_branch_that_does_not_exist_is_422(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    builder = _small_repo(tmp_path / "r")
    builder.branch("topic")
    rid = await metre_api.ingest(builder.path)
    c = metre_api.client
    r = await c.patch(f"/api/v1/repos/{rid}", json={"branch": "no-such-branch"})
    body = _assert_error(r, 422)
    assert "no-such-branch" in body["error"]["message"]
    assert "main, topic" in body["error"]["message"]  # the branches that do exist
    repo = (await c.get(f"/api/v1/repos/{rid}")).json()
    assert repo["branch"] is None
    assert repo["state"] == "idle"
    # a local repository is read as it is now: a branch made after the last poll is there
    builder.branch("fresh")
    for ok in ("topic", "refs/heads/main", "fresh", None):
        r = await c.patch(f"/api/v1/repos/{rid}", json={"branch": ok})
        assert r.status_code == 200, r.text
        assert r.json()["branch"] == ok


async def test_patch_checks_a_remote_against_its_mirror(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    builder = _small_repo(tmp_path / "r")
    builder.branch("topic")
    row = await metre_api.store.add_repo("https://example.org/team/r.git", None)
    c = metre_api.client
    # never polled: no mirror to read, the poll decides
    r = await c.patch(f"/api/v1/repos/{row.id}", json={"branch": "anything"})
    assert r.status_code == 200, r.text
    mirror = tmp_path / "mirrors" / f"{row.id}.git"  # where the poller keeps it
    builder.git("clone", "-q", "--mirror", str(builder.path), str(mirror))
    r = await c.patch(f"/api/v1/repos/{row.id}", json={"branch": "nope"})
    body = _assert_error(r, 422)
    assert "as of its last poll" in body["error"]["message"]
    assert "main, topic" in body["error"]["message"]
    assert (await c.get(f"/api/v1/repos/{row.id}")).json()["branch"] == "anything"
    r = await c.patch(f"/api/v1/repos/{row.id}", json={"branch": "topic"})
    assert r.status_code == 200, r.text


async def test_every_status_an_operation_answers_is_in_openapi(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    rid = await metre_api.ingest(_small_repo(tmp_path / "r").path)
    c = metre_api.client
    doc = create_app(Settings(data_dir=Path("/nonexistent-metre"))).openapi()
    seen: set[int] = set()
    for path, operations in doc["paths"].items():
        url = path.replace("{repo_id}", str(rid)).replace("{sha}", "0" * 40)
        for method, op in operations.items():
            listed = set(op["responses"])
            sends: list[dict[str, Any]] = [{}]
            if "requestBody" in op:
                sends = [
                    {"content": b"{not json", "headers": {"content-type": "application/json"}},
                    {"content": b"[]", "headers": {"content-type": "application/json"}},
                    {"content": b"x", "headers": {"content-type": "text/plain"}},
                    # not UTF-8: FastAPI's 400 ("error parsing the body"), not a 422
                    {
                        "content": b'{"branch": "\xff"}',
                        "headers": {"content-type": "application/json"},
                    },
                ]
            for send in sends:
                r = await c.request(method.upper(), url, **send)
                seen.add(r.status_code)
                assert str(r.status_code) in listed, (method, path, r.status_code, listed, r.text)
    assert {200, 400, 404, 422} <= seen  # the sends reach each kind of answer


async def test_with_the_database_away_every_answer_is_listed(tmp_path: Path) -> None:
    """A store whose database does not answer (nothing listens on its port): every operation
    that reads answers 503, and its OpenAPI responses say so."""
    import socket

    import asyncpg

    from metre.processors.store import PgStore

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://metre@127.0.0.1:{port}/metre"
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=1)
    app = create_app(Settings(data_dir=tmp_path), PgStore(pool, dsn))
    doc = app.openapi()
    seen: set[int] = set()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://metre") as c:
            for path, operations in doc["paths"].items():
                url = path.replace("{repo_id}", "1").replace("{sha}", "0" * 40)
                for method, op in operations.items():
                    body: dict[str, Any] | None = None
                    if method == "post":
                        body = {"url": "/nonexistent/x.git"}  # refused before any lookup
                    elif method == "patch":
                        body = {"branch": "main"}
                    r = await c.request(method.upper(), url, json=body)
                    seen.add(r.status_code)
                    assert str(r.status_code) in op["responses"], (method, path, r.status_code)
    finally:
        await pool.close()
    assert 503 in seen


async def test_unknown_query_parameters_are_422_on_every_operation(metre_api: Pipeline) -> None:
    """A misspelt parameter (`granulrity`) is refused, never ignored for the default."""
    repo_id = await metre_api.store.add_repo("/nonexistent/for-params", None)
    doc = (await metre_api.client.get("/openapi.json")).json()
    seen = 0
    for path, operations in doc["paths"].items():
        url = path.replace("{repo_id}", str(repo_id.id)).replace("{sha}", "0" * 40)
        if "{" in url:  # ids of other kinds (targets, rules): the check comes before the route
            url = re.sub(r"\{[^}]+\}", "1", url)
        for method in operations:
            r = await metre_api.client.request(method.upper(), url, params={"granulrity": "week"})
            assert r.status_code == 422, (method, path, r.status_code, r.text)
            assert "granulrity" in r.json()["error"]["message"], (method, path)
            seen += 1
    assert seen > 30
    ok = await metre_api.client.get(
        f"/api/v1/repos/{repo_id.id}/metrics/activity", params={"granularity": "week"}
    )
    assert ok.status_code == 200, ok.text
