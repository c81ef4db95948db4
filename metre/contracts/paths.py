"""Git paths (bytes) as text that PostgreSQL, JSON and URLs can carry, one to one (pure).

git's paths are bytes with no encoding; PostgreSQL text holds neither NUL nor invalid UTF-8.
metre's path form (docs/metrics.md, "Paths"; events carry it as ``"path_form": 2``):

* a path that is valid UTF-8 and has no backslash is itself (almost every path);
* a backslash (byte 0x5C) is written as two, ``\\\\``;
* each byte that is not part of valid UTF-8 (and NUL, which git never puts in a path) is
  written ``\\xNN``, two lower-case hex digits: the raw byte 0xE9 of Latin-1 ``café`` is
  ``caf\\xe9``, while a file literally named with those four characters is ``caf\\\\xe9``.

The mapping is injective (every backslash in the text starts ``\\\\`` or ``\\xNN``, so the text
reads back in one way only) and `path_bytes` is its inverse. Form 1, written by earlier
versions, left backslashes alone, so two paths could share one text.
"""

from __future__ import annotations

import re

__all__ = ["PATH_FORM", "is_path_text", "path_bytes", "path_text"]

PATH_FORM = 2
"""The form events and the store use (1: backslashes left as they are; not one to one)."""

_ESCAPE = re.compile(r"\\(?:(\\)|x([0-9a-f]{2}))")


def path_text(raw: bytes) -> str:
    """The text of a git path in metre's path form."""
    if 0x5C in raw:  # an int needle: far cheaper than a bytes one
        raw = raw.replace(b"\\", b"\\\\")
    if 0 in raw:
        raw = raw.replace(b"\0", b"\\x00")
    # backslashreplace writes each undecodable byte as \xNN (lower-case); inserting ASCII
    # bytes above never changes how the other bytes decode (ASCII ends any UTF-8 sequence).
    return raw.decode("utf-8", "backslashreplace")


def path_bytes(text: str) -> bytes:
    """git's bytes for a path in metre's path form. Raises `ValueError` for text that has a
    backslash starting neither ``\\\\`` nor ``\\xNN``, or that cannot be UTF-8 (a surrogate)."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        plain = text[pos : m.start()]
        if "\\" in plain:
            raise ValueError(f"a backslash in a path must start \\\\ or \\xNN: {text!r}")
        out += plain.encode("utf-8")
        out += b"\\" if m.group(1) else bytes((int(m.group(2), 16),))
        pos = m.end()
    rest = text[pos:]
    if "\\" in rest:
        raise ValueError(f"a backslash in a path must start \\\\ or \\xNN: {text!r}")
    out += rest.encode("utf-8")
    return bytes(out)


def is_path_text(text: str) -> bool:
    """Whether `text` is exactly what `path_text` gives for some bytes (so a path metre can
    serve): no NUL, no stray backslash, no ``\\xNN`` for a byte that decodes as UTF-8."""
    if "\\" not in text and "\0" not in text:
        return text.isascii() or not _has_surrogate(text)
    try:
        return path_text(path_bytes(text)) == text
    except ValueError:
        return False


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
