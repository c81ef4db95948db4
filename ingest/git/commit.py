"""A commit's header fields, read from its raw text (pure).

Why not dulwich's `Commit`: it parses every field, and refuses identity lines and dates git
accepts; a commit must never fail for its date.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, NamedTuple

from metre.contracts.events import Person
from metre.ingest import gitdate
from metre.ingest.git.errors import RepositoryError

if TYPE_CHECKING:  # metre.ingest.mailmap reads commit headers here
    from metre.ingest.mailmap import Mailmap

__all__ = [
    "Header",
    "commit_time",
    "decode",
    "header_fields",
    "header_values",
    "ident_time",
    "parse_commit",
    "person",
]


class Header(NamedTuple):
    tree: bytes
    parents: tuple[bytes, ...]
    author: bytes
    committer: bytes
    encoding: str | None
    message: bytes


def header_fields(raw: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(key, separator, value) of each header line of a raw commit or tag, in order, as
    `bytes.partition` splits them (a list, not a generator: commits are parsed by the
    hundred thousand); the continuation lines of a multi-line value (gpgsig, mergetag) are
    skipped."""
    head = raw.split(b"\n\n", 1)[0]
    return [line.partition(b" ") for line in head.split(b"\n") if line[:1] != b" "]


def header_values(raw: bytes, key: bytes) -> list[bytes]:
    """The values of header `key` of a raw commit or tag, in order."""
    return [value for k, _, value in header_fields(raw) if k == key]


def parse_commit(raw: bytes) -> Header:
    _, sep, message = raw.partition(b"\n\n")
    if not sep:
        message = b""
    tree = b""
    parents: list[bytes] = []
    author = committer = b""
    encoding: str | None = None
    for key, _, value in header_fields(raw):
        if key == b"tree":
            tree = value
        elif key == b"parent":
            parents.append(value)
        elif key == b"author":
            author = value
        elif key == b"committer":
            committer = value
        elif key == b"encoding":
            encoding = value.decode("ascii", "replace")
    if not tree:
        raise RepositoryError("a commit without a tree (corrupt repository?)")
    return Header(tree, tuple(parents), author, committer, encoding, message)


def decode(data: bytes, encoding: str | None) -> str:
    """As git log shows it: re-encoded from the commit's encoding, else UTF-8 (replacement)."""
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            encoding = None
    return data.decode(encoding or "utf-8", "replace")


def person(ident: bytes, encoding: str | None, mailmap: Mailmap | None = None) -> Person:
    """Parse ``Name <email> <seconds> <+hhmm>`` the way git splits an identity line, map it
    through `mailmap` (as ``git log --use-mailmap`` does), then lower-case the email."""
    lt = ident.find(b"<")
    gt = ident.find(b">", lt + 1) if lt >= 0 else -1
    if lt < 0 or gt < 0:  # git finds no identity, hence no date, in such a line
        return Person(decode(ident.strip(), encoding), "", gitdate.EPOCH, "")
    name = decode(ident[:lt].strip(), encoding)
    email = ident[lt + 1 : gt].decode("utf-8", "replace")
    if mailmap:
        name, email = mailmap.map(name, email)
    # a date never fails a commit: see `metre.ingest.gitdate`
    when, raw = gitdate.parse(ident[ident.rfind(b">") + 1 :])
    return Person(name, email.lower(), when, raw)


def commit_time(h: Header) -> int:
    return ident_time(h.committer)


def ident_time(ident: bytes) -> int:
    """The seconds of an identity line (``Name <email> <seconds> <+hhmm>``); 0 when unreadable."""
    parts = ident[ident.rfind(b">") + 1 :].split()
    try:
        return int(parts[0])
    except (ValueError, IndexError):
        return 0
