"""The metric-update event: what one processed batch changed for one repository (pure).

Published by processors on `<prefix>.metric-updates` after the batch's transaction committed,
one per repository the batch changed; consumers (notifiers, dashboards, caches) re-read the
metrics it names. See docs/events.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

import orjson

from metre.contracts.bus import Message
from metre.contracts.events import partition_key
from metre.contracts.wire import VERSION, MetricUpdateWire
from metre.processors.metrics.catalogue import metrics_of_tables
from metre.processors.sink import RepoChange

SCHEMA_VERSION: Final = VERSION


def combine(changes: Iterable[RepoChange]) -> list[RepoChange]:
    """One change per repository (a batch applied in parts gives several), by repo id."""
    out: dict[int, RepoChange] = {}
    for c in changes:
        old = out.get(c.repo_id)
        if old is None:
            out[c.repo_id] = c
            continue
        newer = c if c.generation >= old.generation else old
        out[c.repo_id] = dataclasses.replace(
            newer,
            commits=old.commits + c.commits,
            retracted=old.retracted + c.retracted,
            tags=old.tags + c.tags,
            tables=old.tables | c.tables,
        )
    return [out[k] for k in sorted(out)]


def update_json(c: RepoChange) -> MetricUpdateWire:
    return {
        "v": SCHEMA_VERSION,
        "type": "metric-update",
        "repo_id": c.repo_id,
        "head": c.head,
        "watermark": c.watermark.isoformat(),
        "generation": c.generation,
        "metrics": metrics_of_tables(set(c.tables)),
        "tables": sorted(c.tables),
        "commits": c.commits,
        "retracted": c.retracted,
    }


def update_message(c: RepoChange) -> Message:
    """The record for `c`, keyed by repository like commit events (per-repository order)."""
    return Message(partition_key(c.repo_id), orjson.dumps(update_json(c)))
