"""Pure parts of observability: log formats and masking (metre/logs.py), readiness states
(metre/readiness.py), and the schema comparison roles start with (processors/database.py)."""

from __future__ import annotations

import asyncio
import io
import logging

import orjson
import pytest

from metre.logs import JsonFormatter, configure, mask
from metre.processors.store import schema_problem
from metre.readiness import Check, evaluate, run_checks


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("cannot reach postgresql://metre:hunter2@db:5432/metre", "hunter2"),
        ("dsn postgres://u:p%40ss@h/d?sslmode=require", "p%40ss"),
        ("host=db user=metre password=hunter2 dbname=m", "hunter2"),
        ("Authorization: Bearer abc.DEF-123_xyz", "abc.DEF-123_xyz"),
        ("token bearer s3cr3t", "s3cr3t"),
        ("https://user:ghp_token123@github.com/o/r.git", "ghp_token123"),
    ],
)
def test_mask_hides_passwords_and_tokens(text: str, hidden: str) -> None:
    masked = mask(text)
    assert hidden not in masked
    assert "***" in masked


def test_mask_keeps_what_is_not_a_secret() -> None:
    for text in ("polled https://github.com/o/r.git in 0.2 s", "repository 3: 120 commits",
                 "user@host:path", "ssh://git@example.org/r.git"):  # fmt: skip
        assert mask(text) == text


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("metre.test", logging.WARNING, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_json_line_has_the_fields_and_extras_masked() -> None:
    line = JsonFormatter("processor").format(
        _record("batch of %d from %s", 50, "postgresql://a:pw1@h/d", repo_id=7, dsn="x://u:pw2@h")
    )
    assert "\n" not in line
    event = orjson.loads(line)
    assert event["level"] == "WARNING"
    assert event["logger"] == "metre.test"
    assert event["role"] == "processor"
    assert event["message"] == "batch of 50 from postgresql://a:***@h/d"
    assert event["repo_id"] == 7
    assert event["dsn"] == "x://u:***@h"
    assert event["time"].endswith("+00:00")


def test_json_line_carries_the_traceback_on_one_line() -> None:
    try:
        raise ValueError("bad value with password=pw3")
    except ValueError:
        import sys

        record = logging.LogRecord("m", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter("poller").format(record)
    assert "\n" not in line
    event = orjson.loads(line)
    assert "Traceback" in event["exc_info"]
    assert "pw3" not in line


def test_configure_replaces_handlers_and_formats() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure("INFO", "json", role="api", stream=stream)
        configure("INFO", "json", role="api", stream=stream)  # again: still one handler
        logging.getLogger("metre.x").info("hello %s", "Bearer tok123")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        assert orjson.loads(lines[0])["message"] == "hello Bearer ***"
        stream.truncate(0)
        stream.seek(0)
        configure("INFO", "text", stream=stream)
        logging.getLogger("metre.x").info("plain")
        assert stream.getvalue().rstrip().endswith("INFO metre.x: plain")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_readiness_states() -> None:
    up, down = Check("up"), Check("down", "gone")
    required = frozenset({"database"})
    assert evaluate({"database": up, "bus": up}, required).status == "ready"
    degraded = evaluate({"database": up, "bus": down}, required)
    assert degraded.status == "degraded"
    assert degraded.http_status == 200
    assert degraded.body()["degraded"] == ["bus"]
    assert degraded.body()["details"] == {"bus": "gone"}
    gone = evaluate({"database": down, "bus": up}, required)
    assert gone.status == "unavailable"
    assert gone.http_status == 503
    assert gone.body()["error"] == {"status": 503, "message": "database unreachable"}
    named = evaluate({"database": up, "bus": Check("degraded", "topic missing")}, required)
    assert named.status == "degraded"
    assert named.body()["checks"] == {"database": "up", "bus": "degraded"}


async def test_probes_that_hang_or_fail_count_as_down() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(3600)
        return True

    async def fails() -> bool:
        raise OSError("no route")

    async def fine() -> bool:
        return True

    result = await run_checks(
        {"database": fine, "bus": hangs, "other": fails}, frozenset({"bus"}), timeout=0.05
    )
    assert result.status == "unavailable"
    assert result.checks["bus"].state == "down"
    assert result.checks["other"] == Check("down", "OSError")


def test_schema_problem_names_the_difference() -> None:
    known = {1: "0001_a.sql", 2: "0002_b.sql", 3: "0003_c.sql"}
    assert schema_problem(dict(known), known) is None
    missing = schema_problem({}, known)
    assert missing is not None
    assert missing.kind == "missing"
    older = schema_problem({1: "0001_a.sql", 2: "0002_b.sql"}, known)
    assert older is not None
    assert (older.kind, older.found, older.known) == ("older", 2, 3)
    newer = schema_problem({**known, 4: "0004_d.sql"}, known)
    assert newer is not None
    assert (newer.kind, newer.found) == ("newer", 4)
    other = schema_problem({**known, 2: "0002_x.sql"}, known)
    assert other is not None
    assert (other.kind, other.unknown) == ("unknown", ["0002_x.sql"])
