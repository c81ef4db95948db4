"""Processors: consumers that apply commit events to PostgreSQL exactly once in effect.

The flow through this package: events in (`runner`: a batch from the bus), the sink (`sink`
with `setfolds`: facts and every metric table's fold in one transaction; `retract`, `rebuild`),
the specs (`metrics`: one typed spec per metric, listed in `metrics.registry`), and the reads
(`reads`, `filereads`, `releasereads`, `commitreads`) the API serves them with. The other parts
of the store: `database` (pool, migrations), `registry` (repositories, leases, poll requests),
`antientropy`, `deadletters`; `store.PgStore` joins them for a process that does every job.

Importing the package registers PostgreSQL's transient failures with the roles' one retry policy
(metre.contracts.retry), which knows no database driver itself.
"""

import asyncpg

from metre.contracts.retry import register_transient

register_transient(
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was lost
    asyncpg.ConnectionDoesNotExistError,  # closed under our feet (server restart)
    asyncpg.exceptions.TransactionRollbackError,  # class 40: serialization failure, deadlock
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    # A connection lost mid-operation can leave asyncpg's protocol confused ("another operation
    # is in progress"); the pool replaces it, and every operation retried here is idempotent.
    asyncpg.exceptions.InternalClientError,
)
