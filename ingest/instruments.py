"""Prometheus metrics of the pollers (docs/observability.md): polls by outcome and how long
they took, and the events published."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

POLLS = Counter(
    "metre_polls",
    "Polls finished, by outcome: `changed` (events published), `unchanged` (nothing new), "
    "`failed` (the repository is marked failed; see its error).",
    ["outcome"],
)
POLL_SECONDS = Histogram(
    "metre_poll_duration_seconds",
    "Time of one poll, fetch to stored position, by outcome.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)
EVENTS_PUBLISHED = Counter(
    "metre_poller_events_published", "Commit and retraction events published and acknowledged."
)


def polled(outcome: str, seconds: float) -> None:
    POLLS.labels(outcome).inc()
    POLL_SECONDS.labels(outcome).observe(seconds)
