"""What kind of file a path is, by GitHub Linguist's rules (pure, cached per path).

go-enry is a maintained Go port of Linguist (its language table, vendored, generated and
documentation patterns); `enry-python` (Apache-2.0) binds it. Classification reads the path
only: events carry no blob content, so content-based rules (Linguist's heuristics for ambiguous
extensions, "generated" markers inside files) are not applied. Lock files that enry's path
rules miss are added here, so hotspots and ownership can leave dependency manifests out.
"""

from __future__ import annotations

import functools
import posixpath
from dataclasses import dataclass
from importlib import metadata

import enry

MAPPING = f"enry {metadata.version('enry-python')}"
"""Which mapping decided the languages (results can change with the go-enry version)."""

OTHER = "Other"
COUNTED_TYPES = frozenset({"programming", "markup"})
"""Linguist's language statistics count these types only (not data or prose)."""

LOCK_FILES = frozenset(
    {
        "uv.lock", "poetry.lock", "pdm.lock", "pipfile.lock", "package-lock.json",
        "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb", "bun.lock",
        "cargo.lock", "go.sum", "go.work.sum", "gemfile.lock", "composer.lock", "mix.lock",
        "pubspec.lock", "podfile.lock", "package.resolved", "flake.lock", "gradle.lockfile",
        "packages.lock.json", "paket.lock", "deno.lock", "conan.lock", "cabal.project.freeze",
        "stack.yaml.lock", "manifest.toml", "renv.lock", "shard.lock", "gopkg.lock",
    }
)  # fmt: skip
"""Dependency lock files by base name (lower-cased); many are also enry's "generated"."""


@dataclass(frozen=True, slots=True)
class Kind:
    """A path's Linguist classification."""

    language: str  # Linguist's name, or OTHER when unknown
    type: str  # programming, markup, data, prose, or "" when unknown
    vendored: bool
    generated: bool
    documentation: bool
    lock: bool

    @property
    def skipped(self) -> bool:
        """Left out of hotspots and ownership: not code the team writes."""
        return self.vendored or self.generated or self.lock

    @property
    def counted(self) -> bool:
        """In the language statistics (as GitHub's language bar)."""
        return not (self.skipped or self.documentation) and self.type in COUNTED_TYPES


@functools.lru_cache(maxsize=65536)
def classify(path: str) -> Kind:
    """The Linguist kind of a repository path (path form 2: '/' separated)."""
    lang = enry.get_language(path, b"") or ""
    return Kind(
        language=lang or OTHER,
        type=str(enry.get_language_type(lang)) if lang else "",
        vendored=bool(enry.is_vendor(path)),
        generated=bool(enry.is_generated(path, b"")),
        documentation=bool(enry.is_documentation(path)),
        lock=posixpath.basename(path).lower() in LOCK_FILES,
    )
