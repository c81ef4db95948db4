"""Finding the repository references in prose (pure, apart from reading the files it scans).

A reference is a relative Markdown link, a path under one of the repository's top-level
directories (`ingest/poller.py`, `docs/`, `processors/migrations/NNNN_*.sql`), a bare Markdown
file name in a document (`reliability.md`), a pytest node id (`tests/x.py::test_y`, and a bare
`::test_z`, which names a test of the test file cited last in the same section), or a backticked
dotted name (`metre.contracts.bus.InMemoryBus`: the module must exist and bind the name). URLs,
absolute paths (`/home/me/src/...`, `/api/v1/repos`) and anything inside them are not references; in
Python only comments and docstrings are read (other strings are data).
"""

from __future__ import annotations

import ast
import functools
import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PACKAGES = ("api", "ingest", "kernels", "metre", "processors")
TOP = (*PACKAGES, "bench", "deploy", "docs", "tests")
FILES = ("README.md", "LICENSE", "Makefile", "Dockerfile", "pyproject.toml", "setup.py")

_URL = re.compile(r"[a-zA-Z][\w+.-]*://\S*|www\.\S+|github\.com/\S+|mailto:\S+")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_PATH = re.compile(
    r"(?<![\w./~$@:-])((?:%s)/[\w.*/<>{},-]*|\.ci/run)" % "|".join(TOP)  # noqa: UP031
)
_FILE = re.compile(r"(?<![\w./~$@-])(%s)(?![\w.-])" % "|".join(map(re.escape, FILES)))  # noqa: UP031
_MD = re.compile(r"(?<![\w./~$@-])([A-Za-z0-9_-]+\.md)(?![\w.-])")
_TEST = re.compile(
    r"(?<![\w./~$@:-])((?:[\w-]+/)*[\w-]+\.py)(?:::((?:test|Test)\w*))?"
    r"|(?<![\w.:])::((?:test|Test)\w*)"
)
"""A Python file cited, with or without a test in it, or a test named alone (`::test_x`)."""
ARTEFACTS = (".so", ".pyc", ".egg-info")


@dataclass(frozen=True, slots=True)
class Ref:
    source: str
    """Where it was read: repository-relative path and line."""
    target: str
    problem: str


def tracked() -> list[str]:
    """The repository's files, as git lists them (work tree included: new files count)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted({p for p in out.splitlines() if (ROOT / p).exists()})


@functools.cache
def prose_of_python(text: str) -> tuple[tuple[int, str], ...]:
    """`_prose_of_python`, sorted by line, once per text."""
    return tuple(sorted(_prose_of_python(text)))


def _prose_of_python(text: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment and docstring (any string standing as a statement): where
    Python code cites files. Other strings are data (test fixtures name files of their own)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for i, line in enumerate(node.value.value.splitlines()):
                yield node.lineno + i, line
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string


_PLACEHOLDER = re.compile(r"\\\*|\\<[^>]*\\>|<[^>]*>|N{3,}")
"""In an escaped path: `*`, `<name>` and `NNNN` stand for any part of a name."""
_CHOICE = re.compile(r"\\\{([^}]*)\\\}")
"""In an escaped path: `{a,b}` is one of its names."""


def _exists(rel: str, files: set[str], dirs: set[str]) -> bool:
    """Whether a path (or a pattern such as `migrations/NNNN_*.sql`) names something here."""
    rel = rel.rstrip("/")
    if not rel:
        return True
    if any(c in rel for c in "*<>{}") or "NNN" in rel:
        pattern = _PLACEHOLDER.sub("[^/]*", re.escape(rel))
        pattern = _CHOICE.sub(lambda m: "(?:" + m[1].replace(",", "|") + ")", pattern)
        rx = re.compile(pattern + "(?:/.*)?")
        return any(rx.fullmatch(f) for f in files)
    return rel in files or rel in dirs


def _trim(path: str) -> str:
    """A path as written in prose, without the punctuation that ends the sentence."""
    return path.rstrip(".,;:)")


def references(rel: str, text: str, files: set[str], dirs: set[str]) -> Iterator[Ref]:
    """The broken references of one file (`rel`, repository-relative)."""
    here = Path(rel).parent
    markdown = rel.endswith(".md")
    lines = prose_of_python(text) if rel.endswith(".py") else enumerate(text.splitlines(), 1)
    last: str | None = None  # the test file cited last: the one a bare `::test_x` is in
    for n, line in lines:
        where = f"{rel}:{n}"
        if markdown and line.startswith("#"):
            last = None
        if markdown:
            for m in _LINK.finditer(line):
                target = m[1].split("#", 1)[0]
                if not target or _URL.fullmatch(m[1]):
                    continue
                norm = _normalise((here / target).as_posix())
                if norm is None or not _exists(norm, files, dirs):
                    yield Ref(where, m[1], "link to nothing in the repository")
        bare = _URL.sub(" ", _LINK.sub("]", line) if markdown else line)  # links: checked
        for m in _PATH.finditer(bare):
            path = _trim(m[1])
            if not path.endswith(ARTEFACTS) and not _exists(path, files, dirs):
                yield Ref(where, path, "no such file or directory")
        for m in _FILE.finditer(bare):
            if not _exists(m[1], files, dirs):
                yield Ref(where, m[1], "no such file")
        if markdown:
            for m in _MD.finditer(bare):
                if not any(f == m[1] or f.endswith("/" + m[1]) for f in files):
                    yield Ref(where, m[1], "no such document")
        for m in _TEST.finditer(bare):
            file, name = m[1] or None, m[2] or m[3]
            cited = _resolve_py(file, files, here) if file else None
            if file and cited is None:
                if Path(file).name.startswith("test_") or name:
                    yield Ref(where, file, "no such test file")
                continue
            if cited is not None and Path(cited).name.startswith("test_"):
                last = cited
            if name is None:
                continue
            within = cited or last
            if within is None:
                yield Ref(where, f"::{name}", "a test named without a test file before it")
            elif not _defines(within, name):
                yield Ref(where, f"{within}::{name}", "no such test")


_DOTTED = re.compile(r"`((?:%s)(?:\.\w+)+)(?:\(\))?`" % "|".join(PACKAGES))  # noqa: UP031
NOT_MODULES = frozenset({"metre.commits", "metre.commits.dlq", "api.json"})
"""Dotted names in prose that are not Python: topics and the data directory's runtime file."""


def dotted(rel: str, text: str, files: set[str]) -> Iterator[Ref]:
    """Backticked `package.module.name` references that name no module, or a name the module
    does not define or import."""
    lines = prose_of_python(text) if rel.endswith(".py") else enumerate(text.splitlines(), 1)
    for n, line in lines:
        for m in _DOTTED.finditer(line):
            if m[1] in NOT_MODULES:
                continue
            module, rest = _module_of(m[1].split("."), files)
            if module is None:
                yield Ref(f"{rel}:{n}", m[1], "no such module")
            elif rest and not _binds(module, rest[0]):
                yield Ref(f"{rel}:{n}", m[1], f"{module} has no {rest[0]}")


LINKED = ("ingest", "processors", "api", "kernels")
"""Top-level folders installed as metre.<name> (metre/<name> is a link to the folder)."""


def _module_of(parts: list[str], files: set[str]) -> tuple[str | None, list[str]]:
    if len(parts) > 1 and parts[0] == "metre" and parts[1] in LINKED:
        parts = parts[1:]
    for i in range(len(parts), 0, -1):
        base = "/".join(parts[:i])
        for candidate in (base + ".py", base + "/__init__.py"):
            if candidate in files:
                return candidate, parts[i:]
    return None, parts


def _binds(module: str, name: str) -> bool:
    """Whether `module` defines, assigns or imports `name` (read, not imported)."""
    n = re.escape(name)
    forms = (
        rf"^\s*(?:async\s+)?(?:def|class)\s+{n}\b",  # defined
        rf"^\s*{n}\s*[:=]",  # assigned
        rf"^\s*(?:from\s+\S+\s+)?import\s+[^#\n]*\b{n}\b",  # imported on one line
        rf"^\s+{n},?\s*(?:#.*)?$",  # imported in parentheses
    )
    return re.search("|".join(forms), _read(module), re.M) is not None


def _defines(rel: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b", _read(rel), re.M) is not None


def _normalise(joined: str) -> str | None:
    parts: list[str] = []
    for p in joined.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(p)
    return "/".join(parts)


def _resolve_py(file: str, files: set[str], here: Path) -> str | None:
    """A .py file as prose names it: from the root, from the citing file's directory, or by a
    name unique under tests/."""
    for candidate in (file, _normalise((here / file).as_posix())):
        if candidate in files:
            return candidate
    matches = [f for f in files if f.startswith("tests/") and f.endswith("/" + file)]
    return matches[0] if len(matches) == 1 else None


@functools.cache
def _read(rel: str) -> str:
    return (ROOT / rel).read_text(encoding="utf-8", errors="replace")
