"""Docs that stand on their own: every file, test and module that README.md, docs/ and the
docstrings and comments of the code cite exists in this repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.references import ROOT, Ref, dotted, references, tracked

_FILES = tracked()
_SET = set(_FILES)
_DIRS = {p.as_posix() for f in _FILES for p in Path(f).parents if p.as_posix() != "."}
_SELF = {"tests/docs/references.py", "tests/docs/test_references.py"}  # their examples
_PROSE = [
    f
    for f in _FILES
    if f.endswith((".md", ".py")) and not f.startswith("tests/vendor/") and f not in _SELF
]
_PACKAGE_PROSE = [f for f in _PROSE if f.endswith(".md") or not f.startswith("tests/")]


def _text(rel: str) -> str:
    return (ROOT / rel).read_text(encoding="utf-8", errors="replace")


def _show(broken: list[Ref]) -> str:
    return "\n".join(f"{r.source}: {r.target} ({r.problem})" for r in broken)


def test_the_scan_covers_the_docs_and_the_packages() -> None:
    assert {"README.md", "docs/architecture.md", "docs/events.md"} <= set(_PROSE)
    for package in ("api", "ingest", "kernels", "metre", "processors", "bench"):
        assert any(f.startswith(package + "/") for f in _PROSE), package


def test_every_cited_path_link_and_test_exists() -> None:
    broken = [r for f in _PROSE for r in references(f, _text(f), _SET, _DIRS)]
    assert broken == [], "references to nothing in the repository:\n" + _show(broken)


def test_every_cited_module_and_name_exists() -> None:
    broken = [r for f in _PACKAGE_PROSE for r in dotted(f, _text(f), _SET)]
    assert broken == [], "dotted names that resolve to nothing:\n" + _show(broken)


@pytest.mark.parametrize(
    ("source", "text", "expected"),
    [
        ("docs/x.md", "[a](events.md) [b](gone.md)", ["gone.md"]),
        ("docs/x.md", "[up](../README.md) [out](../../etc/passwd)", ["../../etc/passwd"]),
        ("docs/x.md", "see `ingest/poller.py`, `ingest/nothing.py`.", ["ingest/nothing.py"]),
        ("docs/x.md", "reliability.md and missing.md", ["missing.md"]),
        ("docs/x.md", "`processors/migrations/NNNN_*.sql`, `docs/`", []),
        ("docs/x.md", "`processors/migrations/9999_*.sql`", ["processors/migrations/9999_*.sql"]),
        ("docs/x.md", "https://github.com/o/r/blob/main/ingest/x.py, /home/me/ingest/y.py", []),
        ("docs/x.md", "`/api/v1/repos`, `curl localhost:8000/api/v1/x`, `$1::bigint`", []),
        (
            "docs/x.md",
            "`tests/ingest/test_poller.py::test_nope`, "
            "`::test_position_is_stored_only_after_the_bus_acknowledged`, `::test_gone`",
            ["tests/ingest/test_poller.py::test_nope", "tests/ingest/test_poller.py::test_gone"],
        ),
        (  # a bare name is a test of the test file cited last, in the same section
            "docs/x.md",
            "`tests/ingest/test_poller.py`, `tests/ingest/test_bus.py`: `::test_run_stops_promptly`"
            "\n# B\n`::test_run_stops_promptly`",
            ["tests/ingest/test_bus.py::test_run_stops_promptly", "::test_run_stops_promptly"],
        ),
        ("docs/x.md", "`test_poller.py::test_run_stops_promptly`, `::test_run_stops_promptly`", []),
        ("docs/x.md", "`test_nothing.py::test_x`", ["test_nothing.py"]),
        ("ingest/x.py", '"""Cites ingest/gone.py."""\nX = "ingest/data.py"  # bench/no.py\n',
         ["ingest/gone.py", "bench/no.py"]),
    ],
)  # fmt: skip
def test_the_scan_finds_what_is_broken_and_only_that(
    source: str, text: str, expected: list[str]
) -> None:
    assert [r.target for r in references(source, text, _SET, _DIRS)] == expected


def test_dotted_names_resolve_to_modules_and_what_they_bind() -> None:
    text = (
        "`metre.contracts.bus.InMemoryBus`, `ingest.nothing`, `metre.contracts.bus.Gone`,"
        " `metre.commits`"
    )
    found = [r.target for r in dotted("docs/x.md", text, _SET)]
    assert found == ["ingest.nothing", "metre.contracts.bus.Gone"]
