"""Startup failures as sentences (pure): what went wrong and what to do, in one line.

`metre` prints a `StartupError` as one line on stderr and exits with status 2; the traceback
is shown only with METRE_LOG_LEVEL=DEBUG. Every role builds its messages here, so a port in
use, an unreachable or refusing database, an unreachable broker and a schema from another
version read the same everywhere.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit


class StartupError(Exception):
    """metre cannot start; the message says why and what to change, in one sentence."""


def _reason(exc: BaseException) -> str:
    """The short cause of an OS or client error ("connection refused"), never a repr."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip().splitlines()
    return text[0] if text and text[0] else type(exc).__name__


def where(dsn: str) -> str:
    """A DSN shown without its password: `user@host:port/database` (or the socket's directory)."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if not host:
        host = (parse_qs(parts.query).get("host") or ["the local socket"])[0]
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{user}{host}{port}{parts.path}"


def port_in_use(host: str, port: int) -> StartupError:
    return StartupError(
        f"cannot listen on {host}:{port}: the port is already in use; stop what listens there, "
        "or choose another with --port (METRE_PORT)"
    )


def health_port_unusable(host: str, port: int, exc: BaseException | None) -> StartupError:
    """The health port (METRE_HEALTH_PORT) of a poller or processor cannot be bound."""
    reason = _reason(exc) if exc is not None else "cannot bind"
    return StartupError(
        f"cannot serve the health port on {host}:{port}: {reason}; give each process on this "
        "host its own METRE_HEALTH_PORT (0 turns the health port off)"
    )


def cannot_listen(host: str, port: int, exc: OSError) -> StartupError:
    return StartupError(
        f"cannot listen on {host}:{port}: {_reason(exc)}; check --host and --port "
        "(METRE_HOST, METRE_PORT)"
    )


def database_unreachable(dsn: str, exc: BaseException) -> StartupError:
    return StartupError(
        f"cannot reach PostgreSQL at {where(dsn)}: {_reason(exc)}; is it running, and is "
        "METRE_DATABASE_URL right?"
    )


def database_refused(dsn: str, exc: BaseException) -> StartupError:
    return StartupError(
        f"PostgreSQL at {where(dsn)} refused the connection: {_reason(exc)}; check the user "
        "and password in METRE_DATABASE_URL"
    )


def broker_unreachable(bootstrap: str, exc: BaseException) -> StartupError:
    cause = exc.__cause__ or exc
    return StartupError(
        f"cannot reach the Kafka broker at {bootstrap}: {_reason(cause)}; is it running, and is "
        "METRE_KAFKA_BOOTSTRAP right?"
    )


def schema_mismatch(found: int, known: int, *, where: str = "the database") -> StartupError:
    """The database was migrated by a newer metre (`found` > `known`), or is behind it."""
    if found > known:
        return StartupError(
            f"{where} has schema version {found}, newer than this metre knows ({known}): it was "
            "migrated by a newer metre; run that version, or a metre at least as new"
        )
    return StartupError(
        f"{where} has schema version {found}, older than this metre needs ({known}): run "
        "`metre migrate` (or `metre up`, which migrates by itself)"
    )


def schema_missing(where: str) -> StartupError:
    return StartupError(
        f"{where} has no metre schema yet: run `metre migrate` first (or `metre up`, which "
        "migrates by itself)"
    )


def schema_unknown(names: list[str], where: str) -> StartupError:
    """Migrations applied that this metre does not have (another build's)."""
    return StartupError(
        f"{where} holds schema migrations this metre does not know ({', '.join(names)}): it was "
        "migrated by another metre build; run that build, or one that includes them"
    )


def data_dir_taken(data_dir: str, holder: str) -> StartupError:
    return StartupError(
        f"another metre up ({holder}) already runs on the data directory {data_dir}; stop it "
        "first, or give this one another --data-dir (METRE_DATA_DIR)"
    )
