"""Release tags: which tags of a mirror are releases (pure; `metre.ingest.releasetags` reads
them from a mirror, `metre.contracts.tags` is the event that publishes them).

A repository's release tags are published as one **tags event**: the whole set of tags whose
name matches the release patterns (METRE_RELEASE_TAGS), each peeled to the commit it names,
with its release time. See docs/events.md ("Tags event") and docs/metrics.md ("releases").

The release time of a tag: the tagger date of an annotated tag (the outermost one, for a tag
of a tag), the committer date of the tagged commit for a lightweight tag or an annotated tag
without a tagger line. Tags naming a tree or a blob are not releases.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

DEFAULT_PATTERNS = "v[0-9]*,[0-9]*"
"""Names starting with a digit, or with `v` and a digit: `v1.2.3`, `1.2`, not `nightly`."""


def parse_patterns(raw: str) -> tuple[str, ...]:
    """`v[0-9]*,[0-9]*` -> the globs (fnmatch, case-sensitive, on the name after
    refs/tags/); an empty string tracks no tag."""
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def is_release(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)
