"""Upgrading from path form 1 (docs/metrics.md, "Paths"): a repository whose stored paths came
from form-1 events (an earlier metre: the two look-alike cafes merged) is marked, by migration
0017 or by the processor that applies such an event, and its next poll republishes it so that
every path-keyed metric equals git again. Real poller, bus, processor and PostgreSQL."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import orjson
import pytest
from dulwich.repo import Repo

import metre.ingest.commits
import metre.ingest.git.merges
from metre.contracts.bus import Message
from metre.contracts.events import encode, partition_key
from metre.ingest.commits import commit_event
from metre.ingest.git.graph import new_commits
from metre.processors.store import REPUBLISH
from testkit.oracle import assert_api_matches_git
from testkit.pipeline import COMMITS, Pipeline, wait_applied
from tests.api.test_files_metrics import (
    all_files,
    check_coupling,
    check_files,
    check_hotspots,
    check_ownership,
)
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    b = GitRepoBuilder(tmp_path_factory.mktemp("plain") / "repo")
    b.write("a.py", b"a\n")
    b.write("caf\u00e9.md", b"valid UTF-8, no backslash: the same in both forms\n")
    b.commit("one")
    return b.path


def _form_1(raw: bytes) -> str:
    """How metre wrote paths before form 2."""
    return raw.decode("utf-8", "backslashreplace")


async def _ingest_as_form_1(api: Pipeline, repo: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Register `repo` and apply it as an earlier metre did: its poller stored the head and
    published form-1 events (no `path_form`), which the processor applies afterwards."""
    row = await api.store.add_repo(str(repo), None)
    head = next(iter(git_commits(repo)))
    with monkeypatch.context() as m:
        m.setattr(metre.ingest.commits, "path_text", _form_1)
        m.setattr(metre.ingest.git.merges, "path_text", _form_1)  # a merge's own files
        dul = Repo(str(repo))
        values = []
        for sha in new_commits(dul, head, None):
            d = orjson.loads(encode(commit_event(dul, row.id, sha)))
            del d["path_form"]
            values.append(orjson.dumps(d))
        dul.close()
    await api.store.set_polled(row.id, head, 3600.0, None)
    before = api.processor.handled
    await api.bus.publish(COMMITS, [Message(partition_key(row.id), v) for v in values])
    await wait_applied(api.processor, before + len(values))
    return row.id


async def _poll(api: Pipeline, repo_id: int) -> None:
    """`api.poll`, waiting for this poll's events (the processor also counted ours)."""
    handled, published = api.processor.handled, api.poller.published
    await api.poll(repo_id)
    await wait_applied(api.processor, lambda: handled + api.poller.published - published)


async def _mark(api: Pipeline, repo_id: int) -> str | None:
    row = await api.store.get_repo(repo_id)
    assert row is not None
    return row.mailmap_sha


async def _check_all(api: Pipeline, repo_id: int, repo: Path) -> None:
    await assert_api_matches_git(api.client, repo_id, repo)
    await check_files(api, repo_id, repo)
    await check_hotspots(api, repo_id, repo, 365)
    await check_ownership(api, repo_id, repo)
    await check_coupling(api, repo_id, repo, 30)


async def test_a_form_1_event_marks_its_repository_and_the_next_poll_heals_it(
    metre_api: Pipeline, lookalike_repo: Path, plain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_id = await _ingest_as_form_1(metre_api, lookalike_repo, monkeypatch)
    plain_id = await _ingest_as_form_1(metre_api, plain, monkeypatch)
    # What an earlier metre served: the two cafes in one row.
    files = {f["path"]: f for f in await all_files(metre_api, repo_id, sort="path")}
    assert files["caf\\xe9.txt"]["lines"] == 4  # 1 + 3: git has two files
    assert await _mark(metre_api, repo_id) == REPUBLISH
    assert await _mark(metre_api, plain_id) is None  # nothing ambiguous: left alone
    await _poll(metre_api, repo_id)
    assert await _mark(metre_api, repo_id) is None  # the head's .mailmap again (none)
    await _check_all(metre_api, repo_id, lookalike_repo)
    await _check_all(metre_api, plain_id, plain)


async def test_migration_0017_marks_repositories_with_a_backslash_in_a_stored_path(
    metre_api: Pipeline, lookalike_repo: Path, plain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_id = await _ingest_as_form_1(metre_api, lookalike_repo, monkeypatch)
    plain_id = await _ingest_as_form_1(metre_api, plain, monkeypatch)
    # As if the data were stored before the processor knew how to mark it.
    await metre_api.store.pool.execute("UPDATE repos SET mailmap_sha = NULL")
    sql = (resources.files("metre.processors") / "migrations" / "0017_path_form.sql").read_text()
    await metre_api.store.pool.execute(sql)
    assert await _mark(metre_api, repo_id) == REPUBLISH
    assert await _mark(metre_api, plain_id) is None
    await _poll(metre_api, repo_id)
    await _poll(metre_api, plain_id)
    assert await _mark(metre_api, repo_id) is None
    await _check_all(metre_api, repo_id, lookalike_repo)
    await _check_all(metre_api, plain_id, plain)


async def test_a_merge_file_alone_marks_its_repository(
    metre_api: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The only backslash of the history is in what a merge decided itself.
    b = GitRepoBuilder(tmp_path / "merge-only")
    b.write("a", b"a\n")
    b.commit("base")
    b.branch("side")
    b.checkout("side")
    b.write("a", b"side\n")
    b.commit("side")
    b.checkout("main")
    b.write("a", b"main\n")
    b.commit("main")
    assert b.merge("side", expect_conflict=True) is None
    b.write("a", b"resolved\n")
    b.write(b"evil\\name", b"added by the merge\n")
    b.commit("Merge side")
    repo_id = await _ingest_as_form_1(metre_api, b.path, monkeypatch)
    await metre_api.store.pool.execute("UPDATE repos SET mailmap_sha = NULL")
    sql = (resources.files("metre.processors") / "migrations" / "0017_path_form.sql").read_text()
    await metre_api.store.pool.execute(sql)
    assert await _mark(metre_api, repo_id) == REPUBLISH
    await _poll(metre_api, repo_id)
    await _check_all(metre_api, repo_id, b.path)


async def test_a_mark_set_during_a_poll_survives_it(
    metre_api: Pipeline, lookalike_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A processor applies a form-1 event of the backlog while a new poller polls the same
    # repository (incrementally): the poll's end must not wipe the mark.
    repo_id = await _ingest_as_form_1(metre_api, lookalike_repo, monkeypatch)
    await _poll(metre_api, repo_id)  # republished: the mark is done
    assert await _mark(metre_api, repo_id) is None
    await metre_api.store.request_poll(repo_id)
    claimed = await metre_api.store.claim_due_repo(60)
    assert claimed is not None
    await metre_api.store.pool.execute(
        "UPDATE repos SET mailmap_sha = $2 WHERE id = $1", repo_id, REPUBLISH
    )
    await metre_api.poller.poll(claimed)  # nothing new at the head
    assert await _mark(metre_api, repo_id) == REPUBLISH
    await _poll(metre_api, repo_id)
    assert await _mark(metre_api, repo_id) is None
    await _check_all(metre_api, repo_id, lookalike_repo)
