"""An independent count of lines of code, for oracle tests: Pygments' lexers.

A line is code when it holds a token that is neither a comment nor whitespace. Pygments files
preprocessor directives under Comment (Comment.Preproc): they are code, as cloc and tokei count
them. Whitespace is ASCII's (space, tab, CR, form feed, vertical tab), as metre's. Paths whose
Linguist language metre has no syntax for count their non-blank lines.
"""

from __future__ import annotations

from functools import lru_cache

import enry
from pygments import lex
from pygments.lexers import get_lexer_by_name
from pygments.token import Comment

from metre.ingest.codelines import SYNTAX

_SPACE = " \t\r\f\v"

LEXERS = {
    "C": "c",
    "C++": "cpp",
    "Python": "python",
    "JavaScript": "javascript",
    "SQL": "sql",
    "Shell": "bash",
    "HTML": "html",
    "TOML": "toml",
    "YAML": "yaml",
}
"""Linguist language -> Pygments lexer, for the languages the oracles cover."""


def pygments_code_lines(lexer_name: str, data: bytes) -> int:
    """Lines of `data` holding a token of `lexer_name` other than comments and whitespace."""
    lexer = get_lexer_by_name(lexer_name, stripnl=False, ensurenl=True)
    code: set[int] = set()
    line = 0
    for ttype, value in lex(data.decode("utf-8", "replace"), lexer):
        comment = ttype in Comment and ttype not in Comment.Preproc
        for k, piece in enumerate(value.split("\n")):
            line += k > 0
            if piece.strip(_SPACE) and not comment:
                code.add(line)
    return len(code)


@lru_cache(maxsize=16384)
def oracle_code_lines(path: str, data: bytes) -> int | None:
    """The code lines of the text blob `data` at `path` (metre's path form), or None when the
    path's language has a syntax in metre but no lexer here (not checked).

    Remembered per (path, content): oracles over every commit ask again for each blob a commit
    keeps unchanged, and the answer depends on nothing else."""
    language = enry.get_language(path, b"") or ""
    if language in LEXERS:
        return pygments_code_lines(LEXERS[language], data)
    if language in SYNTAX:
        return None
    return sum(1 for line in data.split(b"\n") if line.strip(_SPACE.encode()))
