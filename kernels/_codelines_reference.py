"""Lines of code of a text: the pure-Python twin (the spec) of kernels/_codelines.c.

A line is code when it holds a byte that is neither whitespace (space, tab, CR, form feed,
vertical tab) nor part of a comment. Lines are git's: split at LF, a last line without one
counts. The language's syntax is given by the caller (metre.ingest.codelines holds the table):

* ``line_comments``: prefixes that start a comment running to the end of the line,
* ``blocks``: (open, close) delimiters of block comments, which may span lines,
* ``strings``: (open, close, flags) delimiters of string literals, inside which comment
  markers are text (code); flags: ``ESCAPES`` (a backslash escapes the next byte),
  ``MULTILINE`` (a newline does not end the literal; without it an unterminated literal ends
  at the end of its line),
* ``flags``: ``NESTED`` (block comments nest: an opener inside a comment needs its own
  closer), ``WORD_START`` (a line comment starts only at the start of a line or after
  whitespace, as ``#`` in a shell word like ``a#b`` or ``$#`` is not one).

At each position outside comments and strings the block openers are tried first, then the
line comment prefixes, then the string openers, each in the order given (longest first where
one is a prefix of another). An unterminated block comment or multi-line string runs to the
end of the text. Empty tuples count every non-blank line.
"""

from __future__ import annotations

from collections.abc import Sequence

ESCAPES = 1
MULTILINE = 2
NESTED = 1
WORD_START = 2

_SPACE = frozenset(b" \t\r\f\v")

__all__ = ["ESCAPES", "MULTILINE", "NESTED", "WORD_START", "code_lines"]


def code_lines(
    data: bytes,
    line_comments: Sequence[bytes],
    blocks: Sequence[tuple[bytes, bytes]],
    strings: Sequence[tuple[bytes, bytes, int]],
    flags: int,
    /,
) -> int:
    """The number of lines of `data` holding code (see the module docstring)."""
    _check(line_comments, blocks, strings)
    nested = bool(flags & NESTED)
    word_start = bool(flags & WORD_START)
    n = len(data)
    count = 0
    code = False  # the current line holds code
    i = 0
    depth = 0  # > 0: inside block comment `blocks[block]`
    block = 0
    string = -1  # >= 0: inside literal `strings[string]`
    while i < n:
        c = data[i]
        if c == 0x0A:  # newline: the line ends in every state
            count += code
            code = False
            i += 1
            if string >= 0 and not strings[string][2] & MULTILINE:
                string = -1
            continue
        if depth:
            opener, closer = blocks[block]
            if data.startswith(closer, i):
                depth -= 1
                i += len(closer)
            elif nested and data.startswith(opener, i):
                depth += 1
                i += len(opener)
            else:
                i += 1
            continue
        if string >= 0:
            _, closer, sflags = strings[string]
            if c not in _SPACE:
                code = True
            if sflags & ESCAPES and c == 0x5C and i + 1 < n:
                if data[i + 1] == 0x0A:  # an escaped newline: the line ends, the literal not
                    count += code
                    code = False
                i += 2
            elif data.startswith(closer, i):
                string = -1
                i += len(closer)
            else:
                i += 1
            continue
        if c in _SPACE:
            i += 1
            continue
        for k, (opener, _) in enumerate(blocks):
            if data.startswith(opener, i):
                depth, block = 1, k
                i += len(opener)
                break
        else:
            at_word = not word_start or i == 0 or data[i - 1] in _SPACE or data[i - 1] == 0x0A
            if at_word and any(data.startswith(p, i) for p in line_comments):
                j = data.find(b"\n", i)
                i = n if j < 0 else j
                continue
            code = True
            for k, (opener, _, _) in enumerate(strings):
                if data.startswith(opener, i):
                    string = k
                    i += len(opener)
                    break
            else:
                i += 1
    return count + code


def _check(
    line_comments: Sequence[bytes],
    blocks: Sequence[tuple[bytes, bytes]],
    strings: Sequence[tuple[bytes, bytes, int]],
) -> None:
    """TypeError for a syntax of the wrong shape, as the compiled twin raises."""
    ok = all(isinstance(t, bytes) for t in line_comments)
    ok = ok and all(isinstance(b, tuple) and len(b) == 2 for b in blocks)
    ok = ok and all(isinstance(s, tuple) and len(s) == 3 for s in strings)
    tokens = [t for b in blocks for t in b] + [t for s in strings for t in s[:2]]
    if not ok or not all(isinstance(t, bytes) for t in tokens):
        raise TypeError(
            "a syntax is tuples of bytes tokens: (open, close) and (open, close, flags)"
        )
    if not all([*line_comments, *tokens]):
        raise ValueError("syntax tokens must not be empty")
