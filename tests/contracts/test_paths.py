"""metre's path form (metre/contracts/paths.py): one to one, valid UTF-8 unchanged, self-inverse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metre.contracts.paths import is_path_text, path_bytes, path_text
from tests.fixtures.gitrepo import served_path

# Names that print alike or nearly so, and every kind of awkward byte.
AWKWARD = [
    b"caf\xe9.txt",  # Latin-1: the byte 0xE9, not UTF-8
    b"caf\\xe9.txt",  # the four characters \ x e 9
    b"caf\\\\xe9.txt",
    b"caf\xc3\xa9.txt",  # NFC: U+00E9
    b"cafe\xcc\x81.txt",  # NFD: e + U+0301
    b"back\\slash",
    b"\\",
    b"\\\\",
    b"trailing\\",
    b"new\nline",
    b"tab\there",
    b"\xff\xfe",
    b"\xfe\xff",
    b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
    b"\xc0\xaf",  # overlong '/'
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xe2\x82",  # truncated
    b"\xe2\x82\\x",
    b"\\x",
    b"\\x4",
    b"\\xZZ",
    b"\\x41",
    b"\x7f\x01",
    b"a\x00b",  # never in a git path, but never stored raw either
]


def test_valid_utf8_without_backslash_is_itself() -> None:
    for raw in (b"src/parser.c", "李/x.c".encode(), b"a b", "é.rs".encode(), b"new\nline"):
        assert path_text(raw) == raw.decode()


def test_the_two_cafes_are_two_texts() -> None:
    assert path_text(b"caf\xe9.txt") == "caf\\xe9.txt"
    assert path_text(b"caf\\xe9.txt") == "caf\\\\xe9.txt"


def test_awkward_names_are_distinct_and_read_back() -> None:
    texts = [path_text(raw) for raw in AWKWARD]
    assert len(set(texts)) == len(AWKWARD)
    for raw, text in zip(AWKWARD, texts, strict=True):
        assert path_bytes(text) == raw
        assert is_path_text(text)
        assert text == served_path(raw)  # the tests' oracle, built another way
        assert "\0" not in text
        text.encode("utf-8")  # PostgreSQL text can hold it


@given(st.binary(max_size=40))
def test_one_to_one_and_inverse(raw: bytes) -> None:
    text = path_text(raw)
    assert path_bytes(text) == raw
    assert is_path_text(text)
    assert text == served_path(raw)


@given(st.binary(max_size=12), st.binary(max_size=12))
def test_distinct_bytes_distinct_texts(a: bytes, b: bytes) -> None:
    if a != b:
        assert path_text(a) != path_text(b)


@pytest.mark.parametrize(
    "text",
    [
        "a\\b",  # a lone backslash: form 1's way of writing a backslash
        "trailing\\",
        "\\x",
        "\\xE9",  # upper-case hex
        "\\xc3\\xa9",  # bytes that decode as UTF-8 (é): never served escaped
        "\\x41",  # ASCII escaped
        "a\0b",
        "\ud800",  # a surrogate cannot be UTF-8
    ],
)
def test_texts_metre_never_serves_are_refused(text: str) -> None:
    assert not is_path_text(text)


def test_path_bytes_refuses_a_stray_backslash() -> None:
    with pytest.raises(ValueError, match="backslash"):
        path_bytes("a\\b")
