""".mailmap: canonical names and emails, mapped exactly as git maps them (pure, except
`read_mailmap`, which reads a dulwich object store).

Which .mailmap metre uses: the blob ``.mailmap`` at the top of the tracked head's tree. That is
what git itself uses for a bare repository (``mailmap.blob`` defaults to ``HEAD:.mailmap``
there); ``mailmap.file`` and ``~/.mailmap`` are configuration of one machine, not of the
repository, so metre ignores them. A change of that blob re-attributes the whole history.

The rules, as git's mailmap.c applies them (held against ``git check-mailmap`` in tests):

- A line starting with ``#`` is a comment; anything after the first ``<email>`` pair that is
  not a second ``name <email>`` is ignored (so a trailing ``# comment`` is harmless, unless it
  holds ``<...>``, as in git).
- ``Proper Name <commit@email>``: replaces the name of every identity with that email.
- ``<proper@email> <commit@email>``: replaces the email.
- ``Proper Name <proper@email> <commit@email>``: replaces both.
- ``Proper Name <proper@email> Commit Name <commit@email>``: replaces both, only for that name
  and email together; it wins over the email-only forms for that name.
- Emails and names match case-insensitively, ASCII letters only (git's ``strcasecmp``); a
  later line overrides the fields an earlier line set for the same key.

dulwich's own ``dulwich.mailmap`` differs (it matches case-sensitively, maps by name alone for
``Name <email>`` lines and cuts lines at any ``#``), hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metre.ingest.git.commit import header_values
from metre.ingest.git.rawread import raw_object

__all__ = ["MAILMAP_PATH", "Mailmap", "read_mailmap"]

MAILMAP_PATH = b".mailmap"
_ASCII_FOLD = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale


def _fold(s: str) -> str:
    """Lower-case ASCII letters only, as strcasecmp does in the C locale."""
    return s.translate(_ASCII_FOLD)


@dataclass(slots=True)
class _Info:
    name: str | None = None
    email: str | None = None


@dataclass(slots=True)
class _Entry:
    name: str | None = None
    email: str | None = None
    by_name: dict[str, _Info] = field(default_factory=dict)


def _name_and_email(text: str, allow_empty_email: bool) -> tuple[str | None, str | None, str]:
    """(name, email, rest) of the first ``name <email>`` in `text`, or (None, None, "")."""
    left = text.find("<")
    if left < 0:
        return None, None, ""
    right = text.find(">", left + 1)
    if right < 0 or (not allow_empty_email and right == left + 1):
        return None, None, ""
    name = text[:left].strip(_SPACE) or None
    return name, text[left + 1 : right], text[right + 1 :]


class Mailmap:
    """A parsed .mailmap. `Mailmap(b"")` (or no .mailmap at all) maps nothing."""

    __slots__ = ("_map",)

    def __init__(self, data: bytes = b"") -> None:
        self._map: dict[str, _Entry] = {}
        # Names and emails are compared as text; git compares bytes, the same for UTF-8.
        for line in data.decode("utf-8", "replace").split("\n"):
            self._add_line(line)

    def __bool__(self) -> bool:
        return bool(self._map)

    def _add_line(self, line: str) -> None:
        if line.startswith("#"):
            return
        name1, email1, rest = _name_and_email(line, allow_empty_email=False)
        if email1 is None:
            return
        old_name, old_email, _ = _name_and_email(rest, allow_empty_email=True)
        new_name, new_email = name1, email1
        if old_email is None:  # "Name <email>": the only email is the one to match
            old_email, new_email = email1, ""
        entry = self._map.setdefault(_fold(old_email), _Entry())
        if old_name is None:
            if new_name is not None:
                entry.name = new_name
            if new_email:
                entry.email = new_email
        else:
            entry.by_name[_fold(old_name)] = _Info(new_name, new_email or None)

    def map(self, name: str, email: str) -> tuple[str, str]:
        """The canonical (name, email) of an identity as recorded; unchanged if not mapped."""
        entry = self._map.get(_fold(email))
        if entry is None:
            return name, email
        info: _Entry | _Info = entry
        if entry.by_name:
            info = entry.by_name.get(_fold(name), entry)
        return (
            name if info.name is None else info.name,
            email if info.email is None else info.email,
        )


def read_mailmap(repo: Any, head: str) -> tuple[str | None, Mailmap]:
    """(blob sha of ``.mailmap`` at the top of `head`'s tree or None, its mapping).

    `repo` is a dulwich repository; a ``.mailmap`` that is not a blob (a directory, a
    submodule) counts as absent. Blocking: run it in a thread.
    """
    store = repo.object_store
    # the tree from the raw commit: dulwich's Commit refuses dates git accepts ("12x34"), and
    # its get_raw parses a loose object to read it
    _, raw = raw_object(store, head.encode("ascii"))
    tree = store[header_values(raw, b"tree")[0]]
    try:
        mode, sha = tree[MAILMAP_PATH]
    except KeyError:
        return None, Mailmap()
    if mode & 0o170000 in (0o040000, 0o160000):
        return None, Mailmap()
    return sha.decode("ascii"), Mailmap(store[sha].as_raw_string())
