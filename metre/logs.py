"""How metre logs: plain text by default, JSON lines with METRE_LOG_FORMAT=json (one event per
line, for a log collector), both with secrets masked.

`configure` is called once, by `metre.cli`, before any role starts; everything else logs through
`logging.getLogger(__name__)`. A JSON line holds `time` (UTC, ISO 8601), `level`, `logger`,
`message`, `role` (the command: up, poller, processor, api, migrate, ...), the fields passed as
`extra=` and, for an exception, `exc_info` (the formatted traceback).

Masking is a last line of defence, not a licence: code never puts a secret in a message. What
looks like a DSN's password (`scheme://user:PASSWORD@`), a `password=` pair or a bearer token is
replaced by `***`, in the message, the traceback and every extra field.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sys
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["text", "json"]

MASK = "***"
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host (a DSN, a URL with credentials)
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), rf"\g<1>{MASK}@"),
    # password=... in a key/value DSN or a query string
    (re.compile(r"(?i)\b(password|passwd|pwd)(\s*[=:]\s*)[^\s&;,'\"]+"), rf"\g<1>\g<2>{MASK}"),
    # Authorization: Bearer <token>, or a token anywhere after "bearer"
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\g<1>{MASK}"),
)

# Attributes every LogRecord has: anything else on a record came in through `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def mask(text: str) -> str:
    """`text` with anything that looks like a password or a bearer token replaced by ***."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_masked(v) for v in value]
    return mask(str(value))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
            "role": self.role,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in event:
                event[key] = _masked(value)
        if record.exc_info:
            event["exc_info"] = mask(self.formatException(record.exc_info))
        if record.stack_info:
            event["stack_info"] = mask(self.formatStack(record.stack_info))
        return orjson.dumps(event, default=str).decode()


def formatter(fmt: LogFormat, role: str) -> logging.Formatter:
    return JsonFormatter(role) if fmt == "json" else TextFormatter()


def configure(
    level: str | int, fmt: LogFormat = "text", role: str = "metre", stream: TextIO | None = None
) -> None:
    """Send every logger's records to stderr (or `stream`) in `fmt`, at `level` and above.

    Replaces handlers already on the root logger, so it is safe to call again (tests do).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(fmt, role))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
