"""Processors: consumers that apply commit events to PostgreSQL exactly once in effect.

The flow through this package: events in (`runner`: a batch from the bus), the sink (`store`:
facts and every metric writer's fold in one transaction; `retract`, `rebuild`), the specs
(`metrics`: one typed spec per metric, listed in `metrics.registry`), and the reads (`reads`,
`filereads`, `releasereads`) the API serves them with.
"""
