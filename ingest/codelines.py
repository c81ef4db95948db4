"""Lines of code of a blob: lines holding something other than whitespace and comments.

The language is the one GitHub Linguist gives the path (go-enry, the call
processors/metrics/linguist.py makes: by path only). Its comment and string syntax comes from
`SYNTAX`, a small table; a language without an entry counts every non-blank line as code (data,
prose and languages not listed). The counting itself is `kernels.code_lines` (compiled: a
backfill counts every blob of a history once). docs/metrics.md ("Lines of code") lists the table
and where the count differs from cloc's and tokei's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import enry

from metre import kernels
from metre.kernels._codelines_reference import ESCAPES, MULTILINE, NESTED, WORD_START

__all__ = ["SYNTAX", "Syntax", "code_lines", "syntax_of"]


@dataclass(frozen=True, slots=True)
class Syntax:
    """What hides text from the count (comments) and what protects comment markers (strings)."""

    line_comments: tuple[bytes, ...] = ()
    blocks: tuple[tuple[bytes, bytes], ...] = ()
    strings: tuple[tuple[bytes, bytes, int], ...] = ()
    flags: int = 0  # kernels' NESTED (block comments nest), WORD_START (line comments)


_E, _ML = ESCAPES, MULTILINE
_C_STRINGS = ((b'"', b'"', _E), (b"'", b"'", _E))
_C = Syntax((b"//",), ((b"/*", b"*/"),), _C_STRINGS)
_NESTED_C = Syntax((b"//",), ((b"/*", b"*/"),), ((b'"""', b'"""', _ML), *_C_STRINGS), NESTED)
_JS = Syntax((b"//",), ((b"/*", b"*/"),), (*_C_STRINGS, (b"`", b"`", _E | _ML)))
_PY = Syntax(
    (b"#",),
    (),
    (
        (b'"""', b'"""', _E | _ML),
        (b"'''", b"'''", _E | _ML),
        (b'"', b'"', _E),
        (b"'", b"'", _E),
    ),
)
_HASH = Syntax((b"#",), (), ((b'"', b'"', _E), (b"'", b"'", _E)))
_SHELL = Syntax((b"#",), (), ((b'"', b'"', _E | _ML), (b"'", b"'", _ML)), WORD_START)
_SQL = Syntax((b"--",), ((b"/*", b"*/"),), ((b"'", b"'", _ML), (b'"', b'"', _ML)), NESTED)
_MARKUP = Syntax((), ((b"<!--", b"-->"),))

SYNTAX: dict[str, Syntax] = {
    **dict.fromkeys(
        ("C", "C++", "C#", "Java", "Objective-C", "Objective-C++", "Dart", "Groovy"), _C
    ),
    **dict.fromkeys(("Kotlin", "Swift", "Scala"), _NESTED_C),
    "Rust": Syntax((b"//",), ((b"/*", b"*/"),), ((b'"', b'"', _E | _ML),), NESTED),
    "Go": Syntax((b"//",), ((b"/*", b"*/"),), (*_C_STRINGS, (b"`", b"`", _ML))),
    **dict.fromkeys(("JavaScript", "TypeScript", "TSX", "JSX"), _JS),
    "PHP": Syntax((b"//", b"#"), ((b"/*", b"*/"),), _C_STRINGS),
    "CSS": Syntax((), ((b"/*", b"*/"),), _C_STRINGS),
    **dict.fromkeys(("SCSS", "Less"), Syntax((b"//",), ((b"/*", b"*/"),), _C_STRINGS)),
    "Python": _PY,
    "Starlark": _PY,
    **dict.fromkeys(("Ruby", "Perl", "R", "Makefile", "Dockerfile", "CMake"), _HASH),
    "TOML": Syntax((b"#",), (), _PY.strings),
    "YAML": Syntax((b"#",), (), ((b'"', b'"', _E), (b"'", b"'", 0)), WORD_START),
    "Shell": _SHELL,
    **dict.fromkeys(("SQL", "PLpgSQL", "PLSQL", "TSQL"), _SQL),
    **dict.fromkeys(("HTML", "XML", "SVG", "Vue"), _MARKUP),
    "Lua": Syntax(
        (b"--",), ((b"--[[", b"]]"),), ((b"[[", b"]]", _ML), (b'"', b'"', _E), (b"'", b"'", _E))
    ),
    "Haskell": Syntax((b"--",), ((b"{-", b"-}"),), ((b'"', b'"', _E),), NESTED),
}
"""Comment and string syntax by Linguist language name."""

_PLAIN = Syntax()


@functools.lru_cache(maxsize=65536)
def syntax_of(path: str) -> Syntax:
    """The syntax of the language Linguist gives `path` (path form 2), or none (every
    non-blank line is code)."""
    return SYNTAX.get(enry.get_language(path, b"") or "", _PLAIN)


def code_lines(path: str, data: bytes) -> int:
    """Lines of code of the text blob `data` at `path` (the caller leaves binary blobs,
    symlinks and submodules out: they count 0)."""
    s = syntax_of(path)
    return kernels.code_lines(data, s.line_comments, s.blocks, s.strings, s.flags)
