"""Paths that differ in bytes but print alike stay apart end to end (dulwich poller, bus,
processor, PostgreSQL, the app): in events, commits, files, hotspots, ownership, truck factor,
coupling (and its `path` parameter), languages and merges' own contributions, each against
the git-CLI oracle (docs/metrics.md, "Paths")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from metre.contracts.paths import path_bytes
from testkit.lookalikes import LATIN1, LITERAL, NAMES
from testkit.oracle import assert_api_matches_git, expected_files, expected_languages
from testkit.pipeline import COMMITS, Pipeline
from tests.api.files_oracle import expected_coupling, merge_decided
from tests.api.test_files_metrics import (
    all_files,
    check_coupling,
    check_files,
    check_hotspots,
    check_ownership,
    get,
)
from tests.fixtures.gitrepo import git_numstat, served_path

pytestmark = pytest.mark.integration


async def test_the_two_cafes_are_two_files(metre_api: Pipeline, lookalike_repo: Path) -> None:
    repo_id = await metre_api.ingest(lookalike_repo)
    files = {f["path"]: f for f in await all_files(metre_api, repo_id, sort="path")}
    latin1, literal = served_path(LATIN1), served_path(LITERAL)
    assert (latin1, literal) == ("caf\\xe9.txt", "caf\\\\xe9.txt")
    assert files[latin1]["lines"] == 1
    assert files[literal]["lines"] == 3
    # Every awkward name is its own row, and reads back to git's bytes.
    assert {path_bytes(p) for p in files} == {*NAMES, b"README"}
    body = await get(metre_api, repo_id, "ownership", limit=1000)
    assert {path_bytes(f["path"]) for f in body["files"]} == {*NAMES, b"README"} - {
        b"s\xed\xa0\x80.rs"  # deleted
    }


async def test_every_path_keyed_metric_matches_git(
    metre_api: Pipeline, lookalike_repo: Path
) -> None:
    assert {served_path(LATIN1), served_path(LITERAL)} <= merge_decided(lookalike_repo)
    repo_id = await metre_api.ingest(lookalike_repo)
    await assert_api_matches_git(metre_api.client, repo_id, lookalike_repo)
    await check_files(metre_api, repo_id, lookalike_repo)
    await check_hotspots(metre_api, repo_id, lookalike_repo, 365)
    await check_hotspots(metre_api, repo_id, lookalike_repo, 3)
    await check_ownership(metre_api, repo_id, lookalike_repo)
    for n in (30, 3, 2):
        await check_coupling(metre_api, repo_id, lookalike_repo, n)
    r = await metre_api.client.get(f"/api/v1/repos/{repo_id}/metrics/languages")
    assert r.status_code == 200, r.text
    got = {row.pop("language"): row for row in r.json()["languages"]}
    assert got == expected_languages([lookalike_repo])


async def test_coupling_partners_of_each_name(metre_api: Pipeline, lookalike_repo: Path) -> None:
    repo_id = await metre_api.ingest(lookalike_repo)
    files, pairs = expected_coupling(lookalike_repo, 30)
    for name in files:
        body = await get(metre_api, repo_id, "coupling", path=name, min_shared=1)
        want = {(b if a == name else a): n for (a, b), n in pairs.items() if name in (a, b)}
        assert {p["path"]: p["shared"] for p in body["partners"]} == want, name
        assert body["commits"] == files[name], name


@pytest.mark.parametrize(
    "path",
    [
        "caf\\xc3\\xa9.md",  # bytes that are UTF-8 are never escaped
        "back\\slash.py",  # a single backslash: how earlier versions wrote it
        "caf\\XE9.txt",  # upper-case hex
        "a\x00b",
    ],
)
async def test_coupling_refuses_a_path_metre_never_serves(
    metre_api: Pipeline, lookalike_repo: Path, path: str
) -> None:
    repo_id = await metre_api.ingest(lookalike_repo)
    r = await metre_api.client.get(
        f"/api/v1/repos/{repo_id}/metrics/coupling", params={"path": path}
    )
    assert r.status_code == 422, r.text
    # NUL is refused for every parameter before any route reads it (metre.api.deps.storable_text).
    expected = "NUL" if "\x00" in path else "path form"
    assert expected in r.json()["error"]["message"]


async def test_events_carry_path_form_2(metre_api: Pipeline, lookalike_repo: Path) -> None:
    await metre_api.ingest(lookalike_repo)
    consumer = metre_api.bus.consumer([COMMITS], "lookalike-reader")
    await consumer.start()
    try:
        events = []
        while records := await consumer.fetch(1000, 0.05):
            events += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    want = expected_files(lookalike_repo)
    numstat = git_numstat(lookalike_repo)
    assert {e["sha"] for e in events} == set(numstat)
    for e in events:
        assert e["path_form"] == 2
        got = Counter((f["path"], f["added"], f["removed"], f["binary"]) for f in e["files"])
        assert got == want[e["sha"]], e["sha"]
        for f in e["files"]:
            assert path_bytes(f["path"]) in {p for p, _, _ in numstat[e["sha"]]}
    merge = next(e for e in events if e["is_merge"])
    assert {m["path"] for m in merge["merge_files"]} >= {
        served_path(LATIN1),
        served_path(LITERAL),
    }
