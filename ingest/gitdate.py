"""The date of an identity line, as git shows it (pure).

git stores ``<seconds> <+hhmm>`` after the ``>`` of an author or committer line and accepts
almost anything there. What `git log` shows (git 2.39: ``ident.c`` splits the line,
``date.c`` shows it) decides what metre stores, with the git CLI as the test oracle
(tests/ingest/test_dates.py):

- The date is whitespace, decimal digits, whitespace, ``+`` or ``-`` and at least one digit;
  anything after that is ignored. Otherwise (no digits, a negative timestamp, no offset, an
  offset without digits, garbage) the line has *no date*: ``%at`` and ``%ai`` print nothing and
  the default format shows 1970-01-01 00:00:00 +0000.
- The offset is read as a number ``hhmm`` of any length: minutes = (n // 100) * 60 + n % 100,
  so ``+12`` is twelve minutes, ``+0060`` an hour, ``+9999`` 100 h 39 min; a number of
  2^31 - 1 or more (in magnitude) is zero.
- A timestamp beyond 2^63 - 1, or whose local time is beyond what the C library's calendar
  holds (year 2,147,485,547), is shown as 1970-01-01 00:00:00 +0000.
- A local time before 1970 (``0 -0100``) stops git log with "Timestamp before Unix epoch".

A Python `datetime` holds years 1 to 9999 and offsets under 24 hours. Where git's value does
not fit, `parse` returns a bounded stand-in and the recorded text as a flag (see
docs/events.md, "Dates"): no date or git's epoch fallback -> 1970-01-01T00:00:00+00:00; an
offset of 24 hours or more -> the exact instant in UTC; after year 9999 -> the instant in UTC
when it fits, else 9999-12-31T23:59:59+00:00; before 1970 in local time -> the exact value
(git shows none).
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["EPOCH", "LATEST", "parse"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""What git shows for an identity line without a date, or with one it cannot compute."""
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""The last second a `datetime` holds: the stand-in for git's dates after year 9999."""

_DATE = re.compile(rb"[ \t\n\r]*([0-9]+)[ \t\n\r]*([+-][0-9]+)")
"""git's split of the date part (isspace is space, tab, LF and CR in git)."""
_INT_MAX = 2**31 - 1
_TIME_T_MAX = 2**63 - 1
_TM_MAX = 67_768_036_191_676_799
"""The last second glibc's gmtime turns into a calendar date (31 Dec of year 2,147,485,547)."""
_PY_MAX = int(LATEST.timestamp())
_RAW_CHARS = 64
"""The recorded text kept as the flag is cut here (a hostile line may be megabytes long)."""


@functools.lru_cache(maxsize=256)
def _zone(minutes: int) -> timezone:
    """One timezone object per offset: a history has few, and building one per date costs."""
    return timezone(timedelta(minutes=minutes))


def parse(raw: bytes) -> tuple[datetime, str | None]:
    """(time, flag) for the text after an identity line's last ``>``.

    `time` is timezone-aware. `flag` is None when `time` is exactly what ``git log`` shows
    (instant and offset); otherwise it is the recorded text (stripped, at most 64
    characters), and `time` is the bounded stand-in described in the module docstring.
    """
    m = _DATE.match(raw)
    if m is None:
        return EPOCH, _flag(raw)
    seconds = _number(m[1])
    if seconds > _TIME_T_MAX:
        return EPOCH, _flag(raw)
    tz = _number(m[2][1:]) * (-1 if m[2][:1] == b"-" else 1)
    if tz >= _INT_MAX or tz <= -_INT_MAX - 1:  # git: tz >= INT_MAX || tz <= INT_MIN -> 0
        tz = 0
    hhmm = abs(tz)
    minutes = (hhmm // 100) * 60 + hhmm % 100
    minutes = -minutes if tz < 0 else minutes
    local = seconds + minutes * 60
    if local > _TM_MAX:
        return EPOCH, _flag(raw)
    if seconds > _PY_MAX:
        return LATEST, _flag(raw)
    instant = datetime.fromtimestamp(seconds, UTC)
    if abs(minutes) >= 24 * 60 or local > _PY_MAX:
        return instant, _flag(raw)  # the offset cannot be a Python timezone: keep the instant
    when = instant.astimezone(_zone(minutes))
    return when, (_flag(raw) if local < 0 else None)


def _number(digits: bytes) -> int:
    """Decimal digits as a number, saturated above 2^64 as C's strtoumax and strtol saturate
    (and without converting thousands of digits: Python caps that, git does not care)."""
    digits = digits.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= 20 else 2**64


def _flag(raw: bytes) -> str:
    return raw.strip()[:_RAW_CHARS].decode("ascii", "backslashreplace")
