"""Upgrading to blob measures (docs/events.md, "blob"): a repository applied from events of an
earlier poller (no `blob`, or no `blob.code`) serves no bytes and no binary state at head (no
lines of code), is marked by the processor, and its next poll republishes it, after which every
file's blob and every language's bytes equal git (lines of code, Pygments). Real poller, bus,
processor and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from dulwich.repo import Repo

from metre.contracts.bus import Message
from metre.contracts.events import encode, partition_key
from metre.ingest.commits import commit_event
from metre.ingest.git.graph import new_commits
from metre.processors.store import REPUBLISH
from testkit.oracle import expected_languages
from testkit.pipeline import COMMITS, Pipeline, wait_applied
from tests.api.test_files_metrics import all_files, check_files, check_hotspots
from tests.fixtures.gitrepo import git_commits, run_git
from tests.ingest.test_merge_files import build_code_merges, build_turning_binary

pytestmark = pytest.mark.integration


async def _ingest_without_blobs(api: Pipeline, repo: Path, only_code: bool = False) -> int:
    """Register `repo` and apply it as a poller before blob measures did: the head stored,
    events without `blob` (`only_code`: without `blob.code`) published and applied."""
    row = await api.store.add_repo(str(repo), None)
    head = next(iter(git_commits(repo)))
    with Repo(str(repo)) as dul:
        values = []
        for sha in new_commits(dul, head, None):
            d = orjson.loads(encode(commit_event(dul, row.id, sha)))
            for f in d["files"] + d.get("merge_files", []):
                if only_code:
                    del f["blob"]["code"]
                else:
                    del f["blob"]
            values.append(orjson.dumps(d))
    await api.store.set_polled(row.id, head, 3600.0, None)
    before = api.processor.handled
    await api.bus.publish(COMMITS, [Message(partition_key(row.id), v) for v in values])
    await wait_applied(api.processor, before + len(values))
    return row.id


async def test_events_without_blobs_mark_the_repository_and_the_next_poll_heals_it(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    repo = build_turning_binary(tmp_path / "r")
    (tmp_path / "r" / "app.py").write_bytes(b"print(1)\n")  # a counted language
    run_git(repo, "add", "app.py")
    run_git(repo, "commit", "-q", "-m", "code")
    rid = await _ingest_without_blobs(metre_api, repo)
    files = await all_files(metre_api, rid, sort="path")
    assert files
    assert all(f["bytes"] is None and f["binary_at_head"] is None for f in files)
    r = await metre_api.client.get(f"/api/v1/repos/{rid}/metrics/languages")
    assert [row["bytes"] for row in r.json()["languages"]] == [None]
    row = await metre_api.store.get_repo(rid)
    assert row is not None
    assert row.mailmap_sha == REPUBLISH

    handled, published = metre_api.processor.handled, metre_api.poller.published
    await metre_api.poll(rid)
    await wait_applied(
        metre_api.processor, lambda: handled + metre_api.poller.published - published
    )
    row = await metre_api.store.get_repo(rid)
    assert row is not None
    assert row.mailmap_sha is None
    await check_files(metre_api, rid, repo)
    r = await metre_api.client.get(f"/api/v1/repos/{rid}/metrics/languages")
    got = {x.pop("language"): x for x in r.json()["languages"]}
    assert got == expected_languages([repo])
    assert got["Python"]["bytes"] == 9


async def test_events_without_code_lines_serve_none_until_the_next_poll(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    """Events with the other blob measures but no `blob.code` (a poller before lines of code):
    bytes are served, code lines are null and hotspots empty (no exact size to rank by), the
    repository is marked, and its next poll makes both equal git and Pygments."""
    repo = build_code_merges(tmp_path / "r")
    rid = await _ingest_without_blobs(metre_api, repo, only_code=True)
    files = [f for f in await all_files(metre_api, rid, sort="path") if f["exists"]]
    assert files
    assert all(f["code_lines"] is None and f["bytes"] is not None for f in files)
    r = await metre_api.client.get(f"/api/v1/repos/{rid}/metrics/hotspots")
    assert r.json()["files"] == []
    row = await metre_api.store.get_repo(rid)
    assert row is not None
    assert row.mailmap_sha == REPUBLISH

    handled, published = metre_api.processor.handled, metre_api.poller.published
    await metre_api.poll(rid)
    await wait_applied(
        metre_api.processor, lambda: handled + metre_api.poller.published - published
    )
    row = await metre_api.store.get_repo(rid)
    assert row is not None
    assert row.mailmap_sha is None
    await check_files(metre_api, rid, repo)
    await check_hotspots(metre_api, rid, repo, 365)
