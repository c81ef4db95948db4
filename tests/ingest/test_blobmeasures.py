"""The measures of a blob at a path are taken once while kept: a change's old side was an
earlier change's new side, and its code lines are not counted again."""

from __future__ import annotations

import hashlib

import pytest

from metre.ingest import blobmeasures
from metre.ingest.codelines import code_lines
from metre.ingest.git.objects import Entry

_FILE, _LINK, _GITLINK = 0o100644, 0o120000, 0o160000


def _entry(mode: int, data: bytes) -> Entry:
    return Entry(mode, hashlib.sha1(b"blob %d\0" % len(data) + data).digest())


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every code_lines call (by path), with an empty store of kept measures."""
    calls: list[str] = []

    def spy(path: str, data: bytes) -> int:
        calls.append(path)
        return code_lines(path, data)

    monkeypatch.setattr(blobmeasures, "code_lines", spy)
    monkeypatch.setattr(blobmeasures, "_kept", {})
    return calls


def test_a_blob_at_a_path_is_counted_once(counted: list[str]) -> None:
    data = b"int x; /* a\n comment */\n\nint y;\n"
    e = _entry(_FILE, data)
    first = blobmeasures.measures("a.c", e, data)
    assert first == (len(data), 0, len(data), 2)
    assert blobmeasures.measures("a.c", e, data) == first
    assert counted == ["a.c"]
    # The language comes from the path: the same blob elsewhere is counted for that path.
    assert blobmeasures.measures("a.txt", e, data) == (len(data), 0, len(data), 3)
    assert counted == ["a.c", "a.txt"]


def test_mode_is_part_of_the_key(counted: list[str]) -> None:
    data = b"target/path\n"
    assert blobmeasures.measures("l", _entry(_FILE, data), data)[3] == 1
    assert blobmeasures.measures("l", _entry(_LINK, data), data) == (len(data), 0, len(data), 0)
    assert blobmeasures.measures("l", _entry(_GITLINK, data), data) == blobmeasures.NO_BLOB
    assert blobmeasures.measures("l", None, b"") == blobmeasures.NO_BLOB


def test_the_store_is_bounded(counted: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobmeasures, "KEPT", 3)
    blobs = [b"line %d\n" % i for i in range(5)]
    for b in blobs:
        blobmeasures.measures("f.py", _entry(_FILE, b), b)
    assert len(blobmeasures._kept) == 3
    blobmeasures.measures("f.py", _entry(_FILE, blobs[0]), blobs[0])  # pushed out: again
    blobmeasures.measures("f.py", _entry(_FILE, blobs[4]), blobs[4])  # kept: not again
    assert len(counted) == 6


def test_forget_measures_empties_the_store(counted: list[str]) -> None:
    data = b"x = 1\n"
    blobmeasures.measures("f.py", _entry(_FILE, data), data)
    blobmeasures.forget_measures()
    assert blobmeasures._kept == {}
    blobmeasures.measures("f.py", _entry(_FILE, data), data)
    assert counted == ["f.py", "f.py"]
