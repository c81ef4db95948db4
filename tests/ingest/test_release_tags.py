"""Release tags read from a repository the test builds (against `git for-each-ref`), and the
tags event's wire form: round trip, and records that must be refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from dulwich.repo import Repo

from metre.contracts.events import EventError, decode_event
from metre.contracts.tags import ReleaseTag, TagsEvent, encode_tags, tags_digest
from metre.ingest.releases import DEFAULT_PATTERNS, parse_patterns
from metre.ingest.releasetags import read_release_tags
from testkit.gitbuilder import GitRepoBuilder

SHA = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"


def test_read_release_tags_peels_and_dates_as_git(tmp_path: Path) -> None:
    b = GitRepoBuilder(tmp_path / "r")
    b.write("a", b"1\n")
    first = b.commit(
        "one", date="2024-01-01T10:00:00+0100", committer_date="2024-01-02T10:00:00+0100"
    )
    b.git("tag", "v1")
    env = {b"GIT_COMMITTER_DATE": b"2024-02-01T12:00:00-0330"}
    b.git("tag", "-a", "-m", "x", "v2", extra_env=env)
    b.git(
        "tag",
        "-a",
        "-m",
        "y",
        "v3",
        "v2",
        extra_env={b"GIT_COMMITTER_DATE": b"2024-03-01T00:00:00+0000"},
    )
    b.git("tag", "v4-tree", "HEAD^{tree}")
    b.git("tag", "latest")
    with Repo(str(b.path)) as repo:
        tags = {t.name: t for t in read_release_tags(repo, parse_patterns(DEFAULT_PATTERNS))}
    assert sorted(tags) == ["v1", "v2", "v3"]
    fmt = "%(refname:strip=2)|%(*objectname)|%(objectname)|%(taggerdate:iso-strict)"
    out = b.git("for-each-ref", f"--format={fmt}", "refs/tags/v1", "refs/tags/v2").decode()
    rows = {line.split("|")[0]: line.split("|") for line in out.splitlines()}
    assert tags["v1"] == ReleaseTag(
        "v1", first, datetime.fromisoformat("2024-01-02T10:00:00+01:00"), False
    )
    assert rows["v1"][2] == first
    assert tags["v2"].sha == rows["v2"][1] == first
    assert tags["v2"].time == datetime.fromisoformat(rows["v2"][3])
    assert tags["v2"].time.utcoffset() == datetime.fromisoformat(rows["v2"][3]).utcoffset()
    assert tags["v2"].annotated
    # A tag of a tag: the commit at the end of the chain, the outer tagger date.
    assert tags["v3"].sha == first
    assert tags["v3"].time == datetime(2024, 3, 1, tzinfo=UTC)
    with Repo(str(b.path)) as repo:
        assert read_release_tags(repo, ()) == ()
        assert [t.name for t in read_release_tags(repo, ("latest",))] == ["latest"]


def test_tags_event_round_trip_and_digest() -> None:
    tags = (
        ReleaseTag("v1.0", SHA, datetime.fromisoformat("2024-03-08T10:00:00+05:30"), True),
        ReleaseTag("caf\\xe9", SHA, datetime(2024, 1, 1, tzinfo=UTC), False),
    )
    e = TagsEvent(7, tuple(sorted(tags)))
    back = decode_event(encode_tags(e))
    assert back == e
    assert isinstance(back, TagsEvent)
    assert back.tags[1].time.utcoffset() == tags[0].time.utcoffset()
    assert e.event_id == f"7:tags:{e.digest}"
    assert tags_digest(()) is None
    assert TagsEvent(7, ()).event_id == "7:tags:none"
    assert tags_digest(tags) == tags_digest(tuple(reversed(tags)))
    moved = (ReleaseTag("v1.0", "1" * 40, tags[0].time, True), tags[1])
    assert tags_digest(moved) != tags_digest(tags)


@pytest.mark.parametrize(
    "change",
    [
        {"tags": None},
        {
            "tags": [
                {"name": "", "sha": SHA, "time": "2024-01-01T00:00:00+00:00", "annotated": True}
            ]
        },
        {
            "tags": [
                {"name": "v1", "sha": "XYZ", "time": "2024-01-01T00:00:00+00:00", "annotated": True}
            ]
        },
        {"tags": [{"name": "v1", "sha": SHA, "time": "2024-01-01T00:00:00", "annotated": True}]},
        {"tags": [{"name": "v1", "sha": SHA, "time": "yesterday", "annotated": True}]},
        {"tags": [{"name": "v1", "sha": SHA, "time": "2024-01-01T00:00:00+00:00", "annotated": 1}]},
        {
            "tags": [
                {"name": "v1", "sha": SHA, "time": "2024-01-01T00:00:00+00:00", "annotated": True}
            ]
            * 2
        },
        {"repo_id": 0},
        {"repo_id": True},
    ],
)
def test_malformed_tags_events_are_refused(change: dict[str, object]) -> None:
    d = {"v": 1, "type": "tags", "id": "1:tags:none", "repo_id": 1, "tags": [], **change}
    with pytest.raises(EventError):
        decode_event(orjson.dumps(d))


def test_unreadable_tag_objects_are_not_releases(tmp_path: Path) -> None:
    """A tag object whose header dulwich cannot parse, one naming a missing object, and a
    tagger date beyond a datetime: the poll goes on, the readable ones are releases."""
    b = GitRepoBuilder(tmp_path / "r")
    b.write("a", b"1\n")
    head = b.commit("one")
    bad = b"object %s\ntype commit\ntag v6\ntagger T <t@x> notadate\n\nm\n" % head.encode()
    missing = b"object %s\ntype commit\ntag v7\ntagger T <t@x> 1 +0000\n\nm\n" % (b"1" * 40)
    future = b"object %s\ntype commit\ntag v8\ntagger T <t@x> 99999999999999 +0000\n\nm\n" % (
        head.encode()
    )
    for name, body in (("v6", bad), ("v7", missing), ("v8", future)):
        sha = b.git("hash-object", "-t", "tag", "--literally", "-w", "--stdin", stdin=body)
        b.git("update-ref", f"refs/tags/{name}", sha.decode().strip())
    b.git("tag", "v1")
    with Repo(str(b.path)) as repo:
        tags = {t.name: t for t in read_release_tags(repo, ("v*",))}
    assert sorted(tags) == ["v1", "v8"]
    assert tags["v8"].time == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # clamped


def test_unchanged_tags_are_not_read_again_and_changes_are_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll reads the tags each time: a tag that did not move is not read again (its object
    never changes), and one added, moved (to another commit, or re-annotated at the same one)
    or deleted shows as git lists it."""
    import metre.ingest.releasetags as releasetags

    reads: list[bytes] = []
    real = releasetags._peel

    def counted(repo: Repo, sha: bytes) -> ReleaseTag | None:
        reads.append(sha)
        return real(repo, sha)  # type: ignore[arg-type]

    monkeypatch.setattr(releasetags, "_peel", counted)
    monkeypatch.setattr(releasetags, "_PEELED", releasetags._Peeled(1000))
    b = GitRepoBuilder(tmp_path / "r")
    for i in range(5):
        b.write("a", b"%d\n" % i)
        b.commit(f"c{i}", date=f"2024-01-0{i + 1}T10:00:00+0000")
        b.git(
            "tag",
            "-a",
            "-m",
            f"t{i}",
            f"v{i}",
            extra_env={b"GIT_COMMITTER_DATE": b"%d +0000" % (1_700_000_000 + i)},
        )

    def listed() -> dict[str, tuple[str, bool]]:
        fmt = "%(refname:strip=2) %(objecttype) %(*objectname) %(objectname)"
        out = b.git("for-each-ref", f"--format={fmt}", "refs/tags/").decode().splitlines()
        rows = (line.split(" ") for line in out)
        return {n: (peeled or sha, kind == "tag") for n, kind, peeled, sha in rows}

    def read() -> dict[str, tuple[str, bool]]:
        with Repo(str(b.path)) as repo:
            return {t.name: (t.sha, t.annotated) for t in read_release_tags(repo, ("v*",))}

    assert read() == listed()
    assert len(reads) == 5
    assert read() == listed()
    assert len(reads) == 5  # nothing moved: nothing read
    b.git("tag", "-f", "v1", "HEAD~3")  # moved, now lightweight
    b.git("tag", "-d", "v2")
    b.git("tag", "-f", "-a", "-m", "again", "v3", "v3^{}")  # same commit, a new tag object
    b.git("tag", "v9", "HEAD~1")
    assert read() == listed()
    assert len(reads) == 5 + 3  # v1, v3 and v9: the new objects only
