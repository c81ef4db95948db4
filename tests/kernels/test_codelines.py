"""Lines of code: hand-made cases on both twins, compiled == reference on generated texts, and
an independent count with Pygments' lexers on blobs written in six languages."""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metre import kernels
from metre.ingest.codelines import SYNTAX, Syntax, code_lines, syntax_of
from metre.kernels import _codelines_reference
from metre.kernels._codelines_reference import ESCAPES, MULTILINE, NESTED, WORD_START
from tests.codeoracle import pygments_code_lines


@pytest.fixture(scope="module", params=["c", "python"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """A module with ``code_lines``: one of the two twins."""
    if request.param == "python":
        return _codelines_reference
    if importlib.util.find_spec("metre.kernels._codelines") is None:
        pytest.skip("metre.kernels._codelines is not built (no C compiler at install time)")
    return importlib.import_module("metre.kernels._codelines")


def _count(impl: ModuleType, data: bytes, s: Syntax) -> int:
    n: int = impl.code_lines(data, s.line_comments, s.blocks, s.strings, s.flags)
    return n


C, PY, SH, SQL = SYNTAX["C"], SYNTAX["Python"], SYNTAX["Shell"], SYNTAX["SQL"]


@pytest.mark.parametrize(
    ("syntax", "data", "expected"),
    [
        (C, b"", 0),
        (C, b"\n\n \t\r\n", 0),
        (C, b"x", 1),  # no final newline
        (C, b"int a; // c\n// only\n", 1),
        (C, b"/* a\n b */ int c;\n/* d */\n", 1),
        (C, b'"//" x\n"/*"\n', 2),
        (C, b'"a\\"//" b\n', 1),  # an escaped quote does not end the literal
        (C, b"/* /* */ x\n", 1),  # C does not nest
        (C, b"/* never closed\nx\ny\n", 0),
        (C, b"x\r\n\r\n// c\r\ny", 2),
        (C, b"'\"' x\n'/' // y\n", 2),
        (C, b'"unterminated\n// c\n', 1),  # a single-line literal ends with its line
        (C, b'"a\\\n  // still the literal"\n', 2),  # an escaped newline continues it
        (SQL, b"/* a /* b */ c */ x\n/* a /* b */ c\n", 1),  # SQL nests
        (SQL, b"select '--' -- c\n-- d\n'it''s' -- e\n", 2),
        (PY, b'"""doc\n\n# not a comment\n"""\n# comment\nx = 1  # c\n', 4),
        (PY, b"s = '#'\n'''\n   \n'''\n", 3),  # a blank line inside a literal is blank
        (SH, b"#!/bin/sh\necho a#b $# ${#x}\n  # c\necho '#' \"#\"\n", 2),
        (SYNTAX["HTML"], b"<p>\n<!-- a\nb -->\n</p> <!-- c -->\n", 2),
        (Syntax(), b"# anything\n\n  x\n", 2),
    ],
)
def test_cases(impl: ModuleType, syntax: Syntax, data: bytes, expected: int) -> None:
    assert _count(impl, data, syntax) == expected


def test_bad_arguments(impl: ModuleType) -> None:
    with pytest.raises(TypeError):
        impl.code_lines(b"x", ("//",), (), (), 0)
    with pytest.raises(TypeError):
        impl.code_lines(b"x", (), ((b"/*",),), (), 0)
    with pytest.raises(ValueError, match="empty"):
        impl.code_lines(b"x", (b"",), (), (), 0)


def test_the_compiled_kernel_is_loaded_when_built() -> None:
    if os.environ.get("METRE_KERNELS", "").strip().lower() == "python":
        assert kernels.CODELINES_IMPLEMENTATION == "python"
        assert kernels.code_lines is _codelines_reference.code_lines
    elif importlib.util.find_spec("metre.kernels._codelines") is not None:
        from metre.kernels import _codelines

        assert kernels.CODELINES_IMPLEMENTATION == "c"
        assert kernels.code_lines is _codelines.code_lines
    else:
        assert kernels.CODELINES_IMPLEMENTATION == "python"


def test_public_function() -> None:
    assert kernels.CODELINES_IMPLEMENTATION in ("c", "python")
    assert kernels.code_lines(b"a\n\n// b\n", (b"//",), (), (), 0) == 1
    assert syntax_of("src/x.py") is PY
    assert syntax_of("data.json") == Syntax()  # no entry: every non-blank line is code
    assert code_lines("notes.txt", b"# a\n\nb\n") == 2


# Texts over an alphabet dense in delimiters, under syntaxes drawn from the same pieces.
_PIECES = [b"/*", b"*/", b"//", b"#", b"--", b'"', b"'", b'"""', b"\\", b"\n", b"\r\n", b" "]
_PIECES += [b"x", b"{-", b"-}", b"`", b"\t"]
_TOKENS = [b"/*", b"*/", b"//", b"#", b"--", b'"', b"'", b'"""', b"`", b"{-", b"-}", b"x"]
texts = st.lists(st.sampled_from(_PIECES), max_size=80).map(b"".join)
syntaxes = st.builds(
    Syntax,
    st.lists(st.sampled_from(_TOKENS), max_size=3).map(tuple),
    st.lists(st.tuples(st.sampled_from(_TOKENS), st.sampled_from(_TOKENS)), max_size=2).map(tuple),
    st.lists(
        st.tuples(
            st.sampled_from(_TOKENS), st.sampled_from(_TOKENS), st.integers(0, ESCAPES | MULTILINE)
        ),
        max_size=3,
    ).map(tuple),
    st.integers(0, NESTED | WORD_START),  # string flags likewise: 0..ESCAPES | MULTILINE
)


@settings(max_examples=1500, deadline=None)
@given(texts, syntaxes)
def test_compiled_equals_reference(data: bytes, syntax: Syntax) -> None:
    if importlib.util.find_spec("metre.kernels._codelines") is None:
        pytest.skip("metre.kernels._codelines is not built")
    compiled = importlib.import_module("metre.kernels._codelines")
    want = _count(_codelines_reference, data, syntax)
    assert _count(compiled, data, syntax) == want
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    assert 0 <= want <= lines
    assert _count(_codelines_reference, data, Syntax()) == sum(
        1 for line in data.split(b"\n") if line.strip(b" \t\r\f\v")
    )


BLOBS: dict[str, tuple[str, str]] = {
    "c": (
        "src/m.c",
        "#include <stdio.h>\n\n/* a block\n   comment */\nint main(void) {  // c\n"
        '    const char *s = "// not /* a comment";\n    char q = \'"\';\n'
        "    /* one */ return 0; /* two */\n}\n  \t\n/* unterminated\nint x;\n",
    ),
    "python": (
        "pkg/mod.py",
        '#!/usr/bin/env python\n"""Docstring.\n\n# not a comment\n"""\n\nimport os  # why\n'
        "s = '# hash' + \"#\"\nt = '''\n# inside\n'''\n    # indented comment\nx = 1",
    ),
    "javascript": (
        "web/app.js",
        "// header\r\nconst a = '//'; /* c */\r\nconst t = `\r\n// in a template\r\n`;\r\n"
        '\r\n/*\r\n * doc\r\n */\r\nfunction f() { return "/*"; }\r\n',
    ),
    "sql": (
        "db/q.sql",
        "-- header\nSELECT '--not', \"a--b\" FROM t; -- trailing\n/* outer /* inner */ still\n"
        "comment */ SELECT 1;\n\n/* unterminated\nSELECT 2;\n",
    ),
    "bash": (
        "bin/run.sh",
        "#!/bin/sh\n# comment\necho \"# not\" '# not'\n\n  # indented\nx=1 # trailing\n"
        'echo "$#" done\n',
    ),
    "html": (
        "site/index.html",
        "<!DOCTYPE html>\n<html>\n<!-- a\n  comment -->\n<body>\n  <p>text</p> <!-- c -->\n"
        "\n  <!-- one --> <b>x</b>\n</body>\n</html>",
    ),
}


@pytest.mark.parametrize("lexer", sorted(BLOBS))
def test_equals_pygments(impl: ModuleType, lexer: str) -> None:
    path, text = BLOBS[lexer]
    data = text.encode()
    want = pygments_code_lines(lexer, data)
    assert _count(impl, data, syntax_of(path)) == want
    assert want > 0
