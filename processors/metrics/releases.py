"""Releases and lead time for changes, from Git alone (pure).

A release is a tag matching the release patterns whose commit is in the tracked history (the
commits ingested). Each commit belongs to the first release that contains it: the earliest by
release time (then by tag name, code point order) among the tags from which it is reachable,
which is what `git tag --contains <commit>` lists. Its lead time is that release's time minus
the commit's author time, in seconds.

Computed on read from the commit graph (`commits.parents`) and the applied tags snapshot: a
tag that moves or vanishes, or a force-push, changes which commits a release brings, for any
number of commits at once, so nothing of it is stored. Releases are visited in release order,
each walking its ancestry and stopping at commits an earlier release took (their ancestors
were taken too): every commit is visited once, whatever the number of releases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from metre.processors.metrics.catalogue import GRANULARITY
from metre.processors.metrics.commit_size import nearest_rank
from metre.processors.metrics.contributors import period_start
from metre.processors.metrics.spec import MetricSpec

PERCENTILES = (50, 75, 90)


@dataclass(frozen=True, slots=True)
class Node:
    """What a release needs of one commit."""

    parents: tuple[str, ...]
    author_time: datetime
    added: int
    removed: int
    is_merge: bool


@dataclass(frozen=True, slots=True)
class Tag:
    name: str
    sha: str
    time: datetime
    annotated: bool


@dataclass(slots=True)
class Release:
    """One release and the commits it brought."""

    tag: Tag
    commits: int = 0
    merges: int = 0
    added: int = 0
    removed: int = 0
    lead_times: list[int] = field(default_factory=list)


def releases(graph: dict[str, Node], tags: Iterable[Tag]) -> list[Release]:
    """The releases of the history `graph` (sha -> node), in release order, each with the
    commits it contains that no earlier release contains."""
    ordered = sorted((t for t in tags if t.sha in graph), key=lambda t: (t.time, t.name))
    taken: set[str] = set()
    out = []
    for tag in ordered:
        r = Release(tag)
        stack = [tag.sha]
        while stack:
            sha = stack.pop()
            if sha in taken:
                continue
            node = graph.get(sha)
            if node is None:  # a parent outside the ingested history (shallow, grafted)
                continue
            taken.add(sha)
            r.commits += 1
            r.merges += node.is_merge
            r.added += node.added
            r.removed += node.removed
            r.lead_times.append(_seconds(tag.time, node.author_time))
            stack.extend(node.parents)
        out.append(r)
    return out


def _seconds(later: datetime, earlier: datetime) -> int:
    delta = later - earlier
    return delta.days * 86_400 + delta.seconds  # whole seconds, floored (git's are whole)


def percentiles(values: Sequence[int]) -> dict[str, int | None]:
    """Nearest-rank p50/p75/p90 (None without values)."""
    dist: dict[int, int] = {}
    for v in values:
        dist[v] = dist.get(v, 0) + 1
    return {f"p{p}": nearest_rank(dist, p) for p in PERCENTILES}


def release_json(r: Release) -> dict[str, Any]:
    return {
        "tag": r.tag.name,
        "sha": r.tag.sha,
        "time": r.tag.time.isoformat(),
        "annotated": r.tag.annotated,
        "commits": r.commits,
        "merges": r.merges,
        "added": r.added,
        "removed": r.removed,
        "lead_time": percentiles(r.lead_times),
    }


def releases_result(graph: dict[str, Node], tags: Iterable[Tag]) -> dict[str, Any]:
    rs = releases(graph, tags)
    released = sum(r.commits for r in rs)
    return {
        "releases": [release_json(r) for r in rs],
        "unreleased": len(graph) - released,
    }


def lead_time_result(
    graph: dict[str, Node], tags: Iterable[Tag], granularity: str
) -> dict[str, Any]:
    """Per period of release time (UTC) with at least one release: releases, commits they
    brought, and the percentiles of those commits' lead times; and the same over all."""
    rs = releases(graph, tags)
    periods: dict[str, list[Release]] = {}
    for r in rs:
        day = r.tag.time.astimezone(UTC).date()
        periods.setdefault(period_start(day, granularity).isoformat(), []).append(r)
    series = []
    for period in sorted(periods):
        group = periods[period]
        times = [t for r in group for t in r.lead_times]
        series.append({
            "period": period,
            "releases": len(group),
            "commits": len(times),
            "lead_time": percentiles(times),
        })  # fmt: skip
    everything = [t for r in rs for t in r.lead_times]
    return {
        "series": series,
        "total": {
            "releases": len(rs),
            "commits": len(everything),
            "lead_time": percentiles(everything),
        },
        "unreleased": len(graph) - len(everything),
    }


# The commit facts and the tags: a metric-update event names these metrics when either changed.
_TABLES = ("commits", "release_tags")

RELEASES: MetricSpec = MetricSpec(
    "releases",
    "Per release (a tag matching METRE_RELEASE_TAGS whose commit is in the tracked history; "
    "release time = tagger date, or the tagged commit's committer date for a lightweight "
    "tag): the commits it brought (those no earlier release contains), merges, lines "
    "added/removed, and nearest-rank percentiles 50/75/90 of their lead times (release "
    "time - author time)",
    "commits; lines; seconds",
    version=1,
    sources=_TABLES,
)
LEAD_TIME: MetricSpec = MetricSpec(
    "lead-time",
    "Per period of release time (UTC): releases (release frequency), commits released, and "
    "nearest-rank percentiles 50/75/90 of lead time for changes (release time of the first "
    "release containing a commit - its author time)",
    "releases; commits; seconds",
    version=1,
    sources=_TABLES,
    params=(replace(GRANULARITY, default="week"),),
)
