"""Processors: consumers that apply commit events to PostgreSQL exactly once in effect.

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
