"""Releases and lead time over the API against the git CLI (tests/api/releases_oracle.py), on a
history the test builds with merges, annotated, lightweight and nested tags, tags on trees and
on unmerged branches, commits reachable from several tags; then after a tag moves, a tag is
deleted, and the branch is force-pushed. Real poller, processor, PostgreSQL; no mocks."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from metre.ingest import releasepoll
from metre.ingest.releases import DEFAULT_PATTERNS, parse_patterns
from testkit.gitbuilder import GitRepoBuilder
from testkit.pipeline import Pipeline
from tests.api.releases_oracle import expected_lead_time, expected_releases, release_tags

pytestmark = pytest.mark.integration


@pytest.fixture
def api(metre_api: Pipeline) -> Pipeline:
    """`metre_api` with the default release patterns (as the roles set them from Settings)."""
    config = metre_api.poller.config
    metre_api.poller.config = dataclasses.replace(
        config, release_tags=parse_patterns(DEFAULT_PATTERNS)
    )
    return metre_api


def _tag(b: GitRepoBuilder, name: str, target: str = "HEAD", *, date: str | None = None,
         force: bool = False) -> None:  # fmt: skip
    """A lightweight tag, or an annotated one (tagger date `date`) when `date` is given."""
    args = ["tag", *(["-f"] if force else [])]
    if date is None:
        b.git(*args, name, target)
    else:
        b.git(*args, "-a", "-m", f"release {name}", name, target,
              extra_env={b"GIT_COMMITTER_DATE": date.encode()})  # fmt: skip


def build(path: Path) -> GitRepoBuilder:
    b = GitRepoBuilder(path)

    def day(n: int, h: int = 10, tz: str = "+0000") -> str:
        return f"2024-03-{n:02d}T{h:02d}:00:00{tz}"

    b.write("a.txt", b"one\n")
    c1 = b.commit("c1", date=day(1, 9, "+0530"))
    b.write("a.txt", b"one\ntwo\n")
    b.commit("c2", date=day(2), committer_date=day(3, 8))
    _tag(b, "v0.1")  # lightweight: the committer date of c2
    b.branch("feature", c1)
    b.checkout("feature")
    b.write("f.txt", b"f1\n")
    b.commit("f1", date=day(2, 11, "-0700"))
    b.write("f.txt", b"f1\nf2\nf3\n")
    f2 = b.commit("f2", date=day(4))
    _tag(b, "v0.15", date=day(5, 12, "+0200"))  # reached from main only through the merge
    b.checkout("main")
    b.write("b.txt", b"b\n")
    c3 = b.commit("c3", date=day(6))
    b.merge("feature", date=day(7))
    _tag(b, "v0.2", date=day(8, 10, "+0530"))
    _tag(b, "nightly", date=day(8, 11))  # not a release name
    b.write("a.txt", b"one\n")
    b.commit("c4", date=day(9))
    b.write("c.txt", b"x\ny\n")
    c5 = b.commit("c5", date=day(10), committer_date=day(12))
    _tag(b, "v0.3", date=day(15))
    _tag(b, "1.0", c5)  # lightweight on the same commit, earlier (c5's committer date)
    b.git("tag", "-a", "-m", "nested", "v0.4", "v0.3",
          extra_env={b"GIT_COMMITTER_DATE": day(20).encode()})  # fmt: skip
    b.git("tag", "v0.tree", "HEAD^{tree}")  # a tree: not a release
    _tag(b, "v0.5", c3, date=day(25))  # later than the releases that already contain c3
    b.branch("side", "HEAD")
    b.checkout("side")
    b.write("s.txt", b"side\n")
    b.commit("s1", date=day(11))
    _tag(b, "v9.0", date=day(11, 12))  # on a branch that is not tracked
    b.checkout("main")
    b.write("d.txt", b"unreleased\n")
    b.commit("c6", date=day(26))
    del f2
    return b


def _instant(s: str) -> tuple[datetime, Any]:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t, t.utcoffset()


async def check(client: httpx.AsyncClient, repo_id: int, path: Path) -> None:
    """Both endpoints of `repo_id` equal the git CLI's computation on `path`."""
    r = await client.get(f"/api/v1/repos/{repo_id}/metrics/releases")
    assert r.status_code == 200, r.text
    body = r.json()
    want = expected_releases(path)
    tags = release_tags(path)
    got = body["releases"]
    assert {row["tag"] for row in got} == set(tags)
    for row in got:
        assert _instant(row.pop("time")) == _instant(tags[row["tag"]]["iso"]), row["tag"]
    assert got == want["releases"]
    assert body["unreleased"] == want["unreleased"]
    assert body["provenance"]["metric"] == "releases"
    for granularity in ("day", "week", "month"):
        r = await client.get(
            f"/api/v1/repos/{repo_id}/metrics/lead-time", params={"granularity": granularity}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert {k: body[k] for k in ("series", "total", "unreleased")} == expected_lead_time(
            path, granularity
        ), granularity
        assert body["provenance"]["params"] == {"granularity": granularity}


async def test_releases_and_lead_time_equal_git_through_moves_deletes_and_force_push(
    api: Pipeline, tmp_path: Path
) -> None:
    b = build(tmp_path / "repo")
    repo_id = await api.ingest(b.path)
    got = (await api.client.get(f"/api/v1/repos/{repo_id}/metrics/releases")).json()
    names = [r["tag"] for r in got["releases"]]
    # The oracle's own sanity: every kind of tag in the history is there, or left out.
    assert names == ["v0.1", "v0.15", "v0.2", "1.0", "v0.3", "v0.4", "v0.5"], names
    assert [r["commits"] for r in got["releases"]] == [2, 2, 2, 2, 0, 0, 0]
    await check(api.client, repo_id, b.path)

    before = (await api.client.get(f"/api/v1/repos/{repo_id}/metrics/releases")).headers
    _tag(b, "v0.3", "HEAD~2", date="2024-03-16T10:00:00+0100", force=True)  # moved back to c4
    b.git("tag", "-d", "v0.15")  # its commits fall to v0.2
    b.git("tag", "-d", "1.0")
    await api.poll(repo_id)
    r = await api.client.get(
        f"/api/v1/repos/{repo_id}/metrics/releases", headers={"If-None-Match": before["etag"]}
    )
    assert r.status_code == 200  # the tags moved: a new result, not a 304
    last = (await api.updates())[-1]  # a tags-only batch names the release metrics
    assert (last["tables"], last["metrics"], last["commits"]) == (
        ["release_tags"],
        ["lead-time", "releases"],
        0,
    )
    await check(api.client, repo_id, b.path)

    b.git("reset", "-q", "--hard", "v0.2")  # force-push: c4, c5, c6 leave the history
    b.write("e.txt", b"e\n")
    b.commit("c7", date="2024-03-27T10:00:00+0000")
    _tag(b, "v1.1", date="2024-04-02T10:00:00-0400")
    await api.poll(repo_id)
    await check(api.client, repo_id, b.path)
    names = [r["tag"] for r in (await api.client.get(
        f"/api/v1/repos/{repo_id}/metrics/releases")).json()["releases"]]  # fmt: skip
    assert "v0.3" not in names
    assert "v1.1" in names

    b.git("tag", "-d", "v0.1", "v0.2", "v0.4", "v0.5", "v1.1")
    await api.poll(repo_id)
    await check(api.client, repo_id, b.path)


async def test_a_lost_tags_snapshot_is_published_again_and_only_then(
    api: Pipeline, tmp_path: Path
) -> None:
    """A poll with nothing new publishes nothing; once the applied set differs from the
    published one (the bus lost the snapshot), the next poll publishes it again."""
    b = build(tmp_path / "repo")
    repo_id = await api.ingest(b.path)
    published = api.poller.published
    await api.poll(repo_id)  # nothing changed: nothing published
    assert api.poller.published == published
    await api.store.pool.execute("DELETE FROM release_tags WHERE repo_id = $1", repo_id)
    await api.store.pool.execute("UPDATE repos SET tags_applied = NULL WHERE id = $1", repo_id)
    await api.poll(repo_id)
    await check(api.client, repo_id, b.path)


async def test_catalogue_lists_releases_and_lead_time(api: Pipeline) -> None:
    r = await api.client.get("/api/v1/metrics")
    entries = {e["name"]: e for e in r.json()["metrics"]}
    assert entries["releases"]["version"] == 1
    assert entries["lead-time"]["parameters"][0]["default"] == "week"


async def test_an_oversized_snapshot_is_not_published_and_the_repository_stays_idle(
    api: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot over the bus's largest message would fail every poll: it is left out (with a
    warning) and the commits are ingested as usual."""
    monkeypatch.setattr(releasepoll, "MAX_SNAPSHOT_BYTES", 300)
    b = build(tmp_path / "repo")
    repo_id = await api.ingest(b.path)  # asserts the repository is idle
    body = (await api.client.get(f"/api/v1/repos/{repo_id}/metrics/releases")).json()
    assert body["releases"] == []
    assert body["unreleased"] == len(b.git("rev-list", "main").split())
    assert "not published (narrow METRE_RELEASE_TAGS)" in caplog.text
