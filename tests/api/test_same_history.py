"""The same history under several URLs counts once organisation-wide (docs/metrics.md,
"Organisation-wide"): a clone, and a clone one commit behind, stand for the original's
history; a fork with commits of its own still counts. Against the git CLI, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from metre.processors.sharedhistory import Tracked, candidates, redundant
from testkit.pipeline import Pipeline
from tests.api.test_catalogue_metrics import _check
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits


def _clone(src: GitRepoBuilder, dst: Path) -> GitRepoBuilder:
    """A second URL of the same history (`git clone`; the builder re-inits it harmlessly)."""
    src.git("clone", "-q", str(src.path), str(dst))
    return GitRepoBuilder(dst)


def _original(path: Path) -> GitRepoBuilder:
    b = GitRepoBuilder(path)
    b.write("a.py", b"x = 1\n")
    b.commit("one", date="2024-01-01T10:00:00+0000")
    b.branch("side")
    b.checkout("side")
    b.write("b.c", b"int b;\n")
    b.commit("side", date="2024-01-02T10:00:00+0000")
    b.checkout("main")
    b.write("a.py", b"x = 2\ny = 3\n")
    b.commit("two", date="2024-01-03T10:00:00+0000")
    b.merge("side", date="2024-01-04T10:00:00+0000")
    b.write("a.py", b"x = 2\n")
    b.commit("three", date="2024-01-05T10:00:00+0000")
    return b


def test_only_contained_histories_with_the_same_roots_are_redundant() -> None:
    a, b, c = Tracked(1, ("r",), 5), Tracked(2, ("r",), 5), Tracked(3, ("r",), 4)
    other = Tracked(4, ("s",), 9)
    empty = Tracked(5, (), 0)
    groups = candidates([c, b, a, other, empty])
    assert groups == [[a, b, c]]
    inside = {(2, 1), (1, 2), (3, 1), (3, 2)}
    assert redundant(groups, lambda x, y: (x, y) in inside) == {2: 1, 3: 1}
    # 3 diverged from 1 (not contained): both count.
    assert redundant(groups, lambda x, y: (x, y) in {(2, 1)}) == {2: 1}


@pytest.mark.integration
async def test_a_history_under_two_urls_counts_once(metre_api: Pipeline, tmp_path: Path) -> None:
    orig = _original(tmp_path / "orig")
    mirror = _clone(orig, tmp_path / "mirror")
    behind = _clone(orig, tmp_path / "behind")
    behind.git("reset", "-q", "--hard", "HEAD~1")
    fork = _clone(orig, tmp_path / "fork")
    fork.git("reset", "-q", "--hard", "HEAD~1")
    fork.write("f.py", b"own = 1\n")
    fork.commit("the fork's own", date="2024-01-06T10:00:00+0000")
    assert set(git_commits(behind.path)) < set(git_commits(orig.path))
    assert not set(git_commits(fork.path)) <= set(git_commits(orig.path))

    ids = {}
    for name, b in (("orig", orig), ("mirror", mirror), ("behind", behind), ("fork", fork)):
        ids[name] = await metre_api.ingest(b.path)
    c = metre_api.client

    same = ",".join(str(ids[n]) for n in ("orig", "mirror", "behind"))
    await _check(metre_api, "/api/v1/metrics", {"repos": same}, [orig.path])
    r = await c.get("/api/v1/metrics/activity", params={"repos": same})
    assert r.status_code == 200, r.text
    prov = r.json()["provenance"]
    assert prov["same_history"] == [
        {"repo_id": ids["mirror"], "counted_as": ids["orig"]},
        {"repo_id": ids["behind"], "counted_as": ids["orig"]},
    ]
    assert len(prov["repos"]) == 3  # every repository asked for is still stamped

    # A fork with commits of its own is another history (shared commits count in both).
    apart = f"{ids['orig']},{ids['fork']}"
    await _check(metre_api, "/api/v1/metrics", {"repos": apart}, [orig.path, fork.path])
    r = await c.get("/api/v1/metrics/languages", params={"repos": apart})
    assert r.json()["provenance"]["same_history"] == []
    # Each repository's own form is unchanged.
    for name in ("mirror", "behind"):
        b = {"mirror": mirror, "behind": behind}[name]
        await _check(metre_api, f"/api/v1/repos/{ids[name]}/metrics", {}, [b.path])
