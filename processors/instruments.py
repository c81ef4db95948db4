"""Prometheus metrics of the processors (docs/observability.md): what each batch consumed,
applied, found already applied, and dead-lettered; how long a batch took; the consumer's lag
per partition it owns.

Counters are per process (Prometheus sums them over processes); the lag gauge holds only the
partitions this member owns now, so summing it over the group gives the group's lag.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "metre_processor_events_consumed", "Records fetched from the commits topic.", ["topic"]
)
EVENTS_APPLIED = Counter(
    "metre_processor_events_applied",
    "Events new to the store, applied (commits added or retracted).",
)
EVENTS_DUPLICATE = Counter(
    "metre_processor_events_duplicate",
    "Events already applied (redelivered, repeated in a batch, or of a removed repository).",
)
DEAD_LETTERS = Counter(
    "metre_processor_dead_letters",
    "Records sent to the dead-letter topic (not events, or refused by the database).",
)
BATCH_SECONDS = Histogram(
    "metre_processor_batch_duration_seconds",
    "Time to handle one fetched batch: decode, apply in one transaction, publish the metric "
    "updates, commit the offsets (retries included).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
BATCH_EVENTS = Histogram(
    "metre_processor_batch_events",
    "Records per batch handled.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10_000),
)
RETRIES = Counter(
    "metre_processor_retries", "Bus or database operations retried after a transient failure."
)
CONSUMER_LAG = Gauge(
    "metre_consumer_lag",
    "Records in a partition this processor owns that it has not yet fetched (end offset "
    "minus position), by topic and partition.",
    ["topic", "partition"],
)

_lag_shown: set[tuple[str, str]] = set()


def set_lag(lag: Mapping[tuple[str, int], int]) -> None:
    """Show the lag of the partitions owned now; forget those owned no longer."""
    now = {(topic, str(partition)) for topic, partition in lag}
    for labels in _lag_shown - now:
        CONSUMER_LAG.remove(*labels)
    for (topic, partition), value in lag.items():
        CONSUMER_LAG.labels(topic, str(partition)).set(value)
    _lag_shown.clear()
    _lag_shown.update(now)
