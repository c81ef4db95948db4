"""`files[].binary` is the latest change's numstat flag (docs/metrics.md, files), held against
`git log --numstat` on a history where files turn binary and back; `binary_at_head` and
`bytes` are the blob at head, held against `git ls-tree -l` and `git cat-file` (real poller,
processor, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from testkit.gitbuilder import GitRepoBuilder
from testkit.gitlog import git_head_blobs
from testkit.oracle import expected_languages
from testkit.pipeline import Pipeline
from tests.api.test_files_metrics import all_files, check_files
from tests.fixtures.gitrepo import git_commits, git_numstat
from tests.ingest.test_merge_files import build_deciding_merges, build_turning_binary

pytestmark = pytest.mark.integration


def latest_change_binary(repo: Path) -> dict[str, bool]:
    """Path -> whether its non-merge change with the greatest (author time, binary) was shown
    as binary (`- -`) by `git log --numstat`."""
    commits = git_commits(repo)
    latest: dict[str, tuple[object, bool]] = {}
    for sha, rows in git_numstat(repo).items():
        if len(commits[sha].parents) > 1:
            continue
        when = commits[sha].author_time.astimezone(UTC)
        for path, added, _ in rows:
            key = (when, added is None)
            p = path.decode("utf-8", "backslashreplace")
            if p not in latest or key > latest[p]:
                latest[p] = key
    return {p: v[1] for p, v in latest.items()}


async def test_binary_is_the_latest_change(metre_api: Pipeline, tmp_path: Path) -> None:
    b = GitRepoBuilder(tmp_path / "bin")
    b.write("flip.dat", b"text\n")
    b.write("img.png", b"\x89PNG\x00\x01")
    b.write("plain.txt", b"a\n")
    b.commit("one", date="2024-01-01T10:00:00+0000")
    b.write("flip.dat", b"\x00binary now")
    b.commit("two", date="2024-01-02T10:00:00+0000")
    b.write("flip.dat", b"text again\n")  # binary -> text: numstat still says `- -`
    b.write("back.dat", b"\x00")
    b.commit("three", date="2024-01-03T10:00:00+0000")
    b.write("back.dat", b"text\n")
    b.write("plain.txt", b"a\nb\n")
    b.commit("four", date="2024-01-04T10:00:00+0000")
    b.write("plain.txt", b"a\nb\nc\n")
    b.commit("five", date="2024-01-05T10:00:00+0000")
    rid = await metre_api.ingest(b.path)
    r = await metre_api.client.get(f"/api/v1/repos/{rid}/metrics/files", params={"sort": "path"})
    got = {f["path"]: f for f in r.json()["files"]}
    want = latest_change_binary(b.path)
    assert {p: f["binary"] for p, f in got.items()} == want
    # Text at head after a binary phase: the latest change (binary -> text) is binary to
    # numstat, so `binary` is true and `lines` null (documented: not the state at head).
    assert want["flip.dat"] is True
    assert (got["flip.dat"]["binary"], got["flip.dat"]["lines"]) == (True, None)
    assert (got["plain.txt"]["binary"], got["plain.txt"]["lines"]) == (False, 3)
    assert got["img.png"]["binary"] is True


async def test_binary_flags_say_why_lines_is_null(metre_api: Pipeline, tmp_path: Path) -> None:
    b = GitRepoBuilder(tmp_path / "flags")
    b.write("flip.dat", b"text\n")
    b.write("img.png", b"\x89PNG\x00\x01")
    b.write("plain.txt", b"a\n")
    b.commit("one", date="2024-01-01T10:00:00+0000")
    b.write("flip.dat", b"\x00binary now")
    b.commit("two", date="2024-01-02T10:00:00+0000")
    b.write("flip.dat", b"text again\n")
    b.commit("three", date="2024-01-03T10:00:00+0000")
    b.write("flip.dat", b"text again\nand more\n")  # latest change text, an earlier binary
    b.write("plain.txt", b"a\nb\n")
    b.commit("four", date="2024-01-04T10:00:00+0000")
    rid = await metre_api.ingest(b.path)
    r = await metre_api.client.get(f"/api/v1/repos/{rid}/metrics/files", params={"sort": "path"})
    assert r.status_code == 200, r.text
    got = {f["path"]: f for f in r.json()["files"]}
    ever: dict[str, bool] = {}
    for rows in git_numstat(b.path).values():
        for path, added, _ in rows:
            p = path.decode()
            ever[p] = ever.get(p, False) or added is None
    latest = latest_change_binary(b.path)
    assert {p: f["last_change_binary"] for p, f in got.items()} == latest
    assert {p: f["binary"] for p, f in got.items()} == latest  # the old name, same value
    assert {p: f["ever_binary"] for p, f in got.items()} == ever
    for p, f in got.items():
        assert (f["lines"] is None) == (f["ever_binary"] or not f["exists"]), p
    assert (got["flip.dat"]["last_change_binary"], got["flip.dat"]["ever_binary"]) == (False, True)
    assert got["flip.dat"]["lines"] is None


@pytest.mark.parametrize("build", [build_turning_binary, build_deciding_merges, None])
async def test_blob_at_head_is_gits(
    metre_api: Pipeline, tmp_path: Path, awkward_repo: Path, build: Any
) -> None:
    """`bytes` and `binary_at_head` of every file, and languages' bytes, equal `git ls-tree -l`
    and `git cat-file` at HEAD on histories whose merges decide content (criss-cross, evil,
    `-s ours`, octopus) and whose files turn binary and back (and on the awkward repository)."""
    repo = awkward_repo if build is None else build(tmp_path / "r")
    rid = await metre_api.ingest(repo)
    await check_files(metre_api, rid, repo)
    got = {f["path"]: f for f in await all_files(metre_api, rid, sort="path")}
    blobs = git_head_blobs(repo)
    assert {p: (f["bytes"], f["binary_at_head"]) for p, f in got.items() if f["exists"]} == {
        p: blobs[p] for p in got if got[p]["exists"]
    }
    if build is build_turning_binary:
        # binary -> text -> binary -> resolved as text by a merge: text at head, though the
        # latest change (the merge's) is no numstat row and earlier changes were binary.
        assert (got["flip.dat"]["binary_at_head"], got["flip.dat"]["bytes"]) == (False, 17)
        assert got["img.bin"]["binary_at_head"] is True
        assert got["kind"]["bytes"] == 0  # a submodule entry: no blob
    r = await metre_api.client.get(f"/api/v1/repos/{rid}/metrics/languages")
    assert r.status_code == 200, r.text
    langs = {row.pop("language"): row for row in r.json()["languages"]}
    assert langs == expected_languages([repo])
