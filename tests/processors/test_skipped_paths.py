"""The skip rule hotspots and ownership read (processors/filereads.py `skipped`) is Linguist's
as `classify` states it (processors/metrics/linguist.py), on paths of every kind."""

from __future__ import annotations

import pytest

from metre.processors.filereads import skipped
from metre.processors.metrics.linguist import LOCK_FILES, classify
from tests.fixtures.linguist import SKIPPED

PATHS = (
    *SKIPPED,
    *sorted(LOCK_FILES),
    "src/app.py", "db/schema.sql", "lib/defs.inc", "README.md", "docs/guide.md",
    "config.yaml", "web/index.html", "logo.png", "Makefile", "a/b/c/d.c", "deep/Cargo.LOCK",
    "node_modules/left-pad/index.js", "third_party/zlib/inflate.c", "vendor/bundle/x.rb",
    "dist/app.min.js", "web/jquery-3.7.1.min.js", "api/foo.pb.go", "gen/foo_pb2.py",
    "Godeps/Godeps.json", "package.json", "yarn.lock", "go.mod", ".gitignore", "t/t0000.sh",
    "Documentation/git.txt", "contrib/completion/git-completion.bash", "noextension",
    "dir with space/file.ts", "caf\\xc3.txt", "sub\\\\dir/x.py", "build/generated/R.java",
)  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
def test_skipped_is_classifys(path: str) -> None:
    assert skipped(path) == classify(path).skipped


def test_both_kinds_occur() -> None:
    assert {skipped(p) for p in PATHS} == {True, False}
