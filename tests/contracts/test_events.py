"""The event contract: round trips, and clear errors for every kind of malformed record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metre.contracts.events import (
    BlobDelta,
    CommitEvent,
    EventError,
    FileChange,
    Person,
    decode,
    encode,
    partition_key,
)
from metre.contracts.paths import path_text

SHA = "0123456789abcdef0123456789abcdef01234567"

offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
times = st.builds(
    lambda ts, tz: datetime.fromtimestamp(ts, tz),
    st.integers(min_value=0, max_value=4_000_000_000),
    offsets,
)
people = st.builds(Person, st.text(max_size=20), st.text(max_size=20), times)
files = st.builds(
    FileChange,
    st.binary(min_size=1, max_size=30).map(path_text),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.booleans(),
    st.sampled_from(["A", "D", "M", "T"]),
    st.none() | st.builds(BlobDelta, st.integers(-(10**9), 10**9), st.sampled_from([-1, 0, 1]),
                          st.integers(-(10**9), 10**9), st.none() | st.integers(-(10**9), 10**9)),
)  # fmt: skip
shas = st.text("0123456789abcdef", min_size=40, max_size=40)
events = st.builds(
    CommitEvent,
    st.integers(1, 2**53),
    shas,
    st.lists(shas, max_size=3).map(tuple),
    people,
    people,
    st.text(max_size=50),
    st.lists(files, max_size=5).map(tuple),
)


@given(events)
def test_round_trip(e: CommitEvent) -> None:
    back = decode(encode(e))
    assert back == e
    assert back.author.time.utcoffset() == e.author.time.utcoffset()


def test_wire_fields() -> None:
    t = datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=13, minutes=45)))
    e = CommitEvent(7, SHA, (SHA, SHA), Person("A", "a@x", t), Person("B", "b@x", t), "s")
    d = orjson.loads(encode(e))
    assert d["v"] == 1
    assert d["id"] == f"7:{SHA}"
    assert d["is_merge"] is True
    assert d["author"]["time"] == "2024-03-01T09:30:00+13:45"
    assert partition_key(7) == b"7"


def _valid() -> dict[str, object]:
    t = "2024-03-01T09:30:00+00:00"
    return {
        "v": 1,
        "type": "commit",
        "repo_id": 1,
        "sha": SHA,
        "parents": [],
        "author": {"name": "a", "email": "a@x", "time": t},
        "committer": {"name": "a", "email": "a@x", "time": t},
        "summary": "",
        "files": [{"path": "f", "added": 1, "removed": 0, "binary": False, "change": "A"}],
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.update(v=2), "schema version"),
        (lambda d: d.update(type="tag"), "event type"),
        (lambda d: d.update(repo_id="1"), "repo_id"),
        (lambda d: d.update(repo_id=0), "repo_id"),
        (lambda d: d.update(sha="xyz"), "sha"),
        (lambda d: d.update(parents=["nope"]), "parents"),
        (lambda d: d["author"].update(time="yesterday"), "ISO 8601"),
        (lambda d: d["author"].update(time="2024-03-01T09:30:00"), "UTC offset"),
        (lambda d: d.update(files=[{"path": "f", "added": -1, "removed": 0}]), "added"),
        (lambda d: d.update(files=[{"path": "", "added": 1, "removed": 0}]), "path"),
        (
            lambda d: d.update(files=[{"path": "f", "added": 1, "removed": 0, "change": "R"}]),
            "change",
        ),
        (lambda d: d.update(files="f"), "files"),
        (lambda d: d.update(path_form=3), "path_form"),
        (lambda d: d.update(path_form="2"), "path_form"),
        (lambda d: d["files"][0].update(path="a\0b"), "NUL"),
        (
            lambda d: d.update(path_form=2, files=[{"path": "a\\b", "added": 1, "removed": 0}]),
            "path form 2",
        ),
        (
            lambda d: d.update(
                path_form=2, files=[{"path": "\\xc3\\xa9", "added": 1, "removed": 0}]
            ),
            "path form 2",
        ),
    ],
)
def test_malformed_events_say_why(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    d = _valid()
    decode(orjson.dumps(d))  # the base is valid
    change(d)
    with pytest.raises(EventError, match=reason):
        decode(orjson.dumps(d))


def test_form_1_events_are_read_and_flagged_when_ambiguous() -> None:
    d = _valid()  # no path_form: written by an earlier metre
    assert decode(orjson.dumps(d)).path_form == 1
    assert not decode(orjson.dumps(d)).ambiguous_paths
    d["files"] = [{"path": "caf\\xe9.txt", "added": 1, "removed": 0}]  # which of the two?
    e = decode(orjson.dumps(d))
    assert e.ambiguous_paths
    assert e.files[0].path == "caf\\xe9.txt"
    d["path_form"] = 2  # now it is the raw byte 0xE9
    assert not decode(orjson.dumps(d)).ambiguous_paths


def test_path_form_on_the_wire() -> None:
    t = datetime(2024, 3, 1, tzinfo=UTC)
    f = FileChange(path_text(b"caf\\xe9.txt"), 3, 0, False, "A")
    e = CommitEvent(7, SHA, (), Person("A", "a@x", t), Person("A", "a@x", t), "s", (f,))
    d = orjson.loads(encode(e))
    assert d["path_form"] == 2
    assert d["files"][0]["path"] == "caf\\\\xe9.txt"


def test_blob_measures_are_optional() -> None:
    """Events of earlier revisions have no `blob`: read as unknown, and flagged so that their
    repository's history is published again; a malformed one is refused."""
    d = _valid()
    e = decode(orjson.dumps(d))
    assert e.files[0].blob is None
    assert e.lacks_blobs
    d["files"][0]["blob"] = {"bytes": 2, "binary": 0, "text_bytes": 2}  # type: ignore[index]
    e = decode(orjson.dumps(d))
    assert e.files[0].blob == BlobDelta(2, 0, 2)
    assert not e.lacks_blobs
    assert orjson.loads(encode(e))["files"][0]["blob"] == d["files"][0]["blob"]  # type: ignore[index]
    for bad in ({"bytes": 1, "binary": 2, "text_bytes": 0}, {"bytes": "1"}, [1, 0, 1]):
        d["files"][0]["blob"] = bad  # type: ignore[index]
        with pytest.raises(EventError, match="blob"):
            decode(orjson.dumps(d))


def test_code_lines_are_optional() -> None:
    """`blob.code` is absent in events written before it: unknown, flagged for republishing
    (the other blob measures stay known); a non-integer is refused."""
    d = _valid()
    d["files"][0]["blob"] = {"bytes": 2, "binary": 0, "text_bytes": 2}  # type: ignore[index]
    e = decode(orjson.dumps(d))
    assert e.files[0].blob == BlobDelta(2, 0, 2, None)
    assert e.lacks_code
    assert not e.lacks_blobs
    d["files"][0]["blob"]["code"] = 1  # type: ignore[index]
    e = decode(orjson.dumps(d))
    assert e.files[0].blob == BlobDelta(2, 0, 2, 1)
    assert not e.lacks_code
    assert orjson.loads(encode(e))["files"][0]["blob"]["code"] == 1
    d["files"][0]["blob"]["code"] = "1"  # type: ignore[index]
    with pytest.raises(EventError, match="code"):
        decode(orjson.dumps(d))


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff\xfe"])
def test_not_an_event(raw: bytes) -> None:
    with pytest.raises(EventError):
        decode(raw)
