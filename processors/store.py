"""metre's PostgreSQL as one object (I/O): every part of the store over one pool.

The parts, by job: the database and its migrations (processors/database.py), the repository
registry (registry.py), the sink that applies events (sink.py), anti-entropy facts
(antientropy.py), dead letters (deadletters.py) and the reads of one commit (commitreads.py).
A process that needs one job may connect that part alone; `PgStore` is for those that do them
all (`metre up`, the API, tests). The names below are re-exported for their older import path.
"""

from __future__ import annotations

from metre.processors.antientropy import AntiEntropy
from metre.processors.commitreads import AmbiguousSha, CommitReads
from metre.processors.database import Database, SchemaNotCurrent, SchemaTooNew, schema_problem
from metre.processors.deadletters import DEAD_LETTER_PAYLOAD_CHARS, DeadLetter, DeadLetters
from metre.processors.registry import POLL_CHANNEL, Registry, Removal, RepoExists, RepoRow
from metre.processors.sink import REPUBLISH, RepoChange, Sink

__all__ = [
    "DEAD_LETTER_PAYLOAD_CHARS",
    "POLL_CHANNEL",
    "REPUBLISH",
    "AmbiguousSha",
    "Database",
    "DeadLetter",
    "PgStore",
    "Removal",
    "RepoChange",
    "RepoExists",
    "RepoRow",
    "SchemaNotCurrent",
    "SchemaTooNew",
    "schema_problem",
]


class PgStore(Registry, Sink, AntiEntropy, DeadLetters, CommitReads):
    """Every part of the store over one pool. Build with `await PgStore.connect(dsn)`."""
