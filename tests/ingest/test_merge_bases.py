"""Merge-base searches: the topologically numbered graph (backfills) and the date-ordered search
(polls) give the same events; a merge-heavy generated history matches git; a poll of new
commits on a long history reads only commits near its top."""

from __future__ import annotations

from pathlib import Path

import pytest
from dulwich.repo import Repo

from metre.contracts.events import encode
from metre.ingest.commits import commit_event
from metre.ingest.git import objects
from metre.ingest.git.graph import new_commits, use_commit_graph
from testkit.mergeheavy import generate_merge_heavy_history
from tests.fixtures.gitrepo import run_git
from tests.ingest.test_merge_files import check_every_commit


def test_merge_heavy_history_matches_git(tmp_path: Path) -> None:
    info = generate_merge_heavy_history(tmp_path / "r", 160, seed=1, tail=16)
    assert int(info["merges"]) * 4 >= int(info["commits"])
    assert check_every_commit(tmp_path / "r") > 0


@pytest.mark.parametrize("seed", [0, 2])
def test_graph_and_date_ordered_searches_give_the_same_events(tmp_path: Path, seed: int) -> None:
    repo = tmp_path / "r"
    info = generate_merge_heavy_history(repo, 1_200, seed=seed, tail=16)
    shas = run_git(repo, "rev-list", "--all").decode().split()
    octopus = run_git(repo, "rev-list", "--all", "--min-parents=3").decode().split()
    assert int(info["merges"]) * 4 >= len(shas)
    assert octopus
    with Repo(str(repo)) as by_date:
        dated = [encode(commit_event(by_date, 1, s)) for s in shas]
        assert len(objects.reader(by_date).history) == 0  # no graph: the date-ordered search
    with Repo(str(repo)) as by_graph:
        use_commit_graph(by_graph)
        graphed = [encode(commit_event(by_graph, 1, s)) for s in shas]
        assert len(shas) // 2 < len(objects.reader(by_graph).history) <= len(shas)
    assert graphed == dated
    with Repo(str(repo)) as walked:  # a whole walk numbers the history by itself
        new_commits(walked, info["main"], None)
        assert len(objects.reader(walked).history) == int(
            run_git(repo, "rev-list", "--count", "main")
        )


def test_a_poll_reads_only_the_top_of_a_long_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "r"
    info = generate_merge_heavy_history(repo, 4_000, seed=3, tail=40)
    reads = 0
    raw = objects.Reader.raw

    def counted(self: objects.Reader, sha: bytes, expected: int) -> bytes:
        nonlocal reads
        reads += expected == objects.COMMIT
        return raw(self, sha, expected)

    monkeypatch.setattr(objects.Reader, "raw", counted)
    with Repo(str(repo)) as r:
        new = new_commits(r, info["main"], info["main_before_tail"])
        assert len(new) == 40
        events = [commit_event(r, 1, s) for s in new]
    assert sum(e.is_merge for e in events) >= 8
    assert reads < 400, f"{reads} commit reads for a poll of 40 on top of 4,000"
