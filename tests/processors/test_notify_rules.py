"""The notification rules and digests as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from metre.processors.digest import MAX_LINES, DigestAlert, payload
from metre.processors.notify_rules import Observation, Rule, Seen, evaluate


def obs(value: float, subject: str = "repo:1") -> Observation:
    return Observation(subject, value, "https://example.com/r", 1, "detail")


def run(rule: Rule, values: list[float]) -> list[tuple[bool, str] | None]:
    seen: Seen | None = None
    out: list[tuple[bool, str] | None] = []
    for v in values:
        seen, alert = evaluate(rule, seen, obs(v))
        out.append(None if alert is None else (alert.resolved, alert.message))
    return out


def test_a_level_rule_speaks_when_the_condition_starts_and_ends_only() -> None:
    rule = Rule(1, "failing", None, 30, 9)
    said = run(rule, [0, 10, 31, 45, 90, 0, 0, 40])
    assert [s is not None for s in said] == [False, False, True, False, False, True, False, True]
    assert said[2] == (False, "https://example.com/r has been failing for 31 minutes: detail")
    assert said[5] == (True, "https://example.com/r polls again")


def test_truck_factor_falls_by_the_threshold_or_to_one() -> None:
    assert run(Rule(1, "truck_factor", None, 1, 9), [3, 3, 2, 2, 3, 1]) == [
        None,  # the first value is the baseline
        None,
        (False, "https://example.com/r: truck factor fell from 3 to 2: detail"),
        None,
        None,  # a rise is not news
        (False, "https://example.com/r: truck factor fell from 3 to 1: detail"),
    ]
    by_two = run(Rule(1, "truck_factor", None, 2, 9), [5, 4, 3, 2, 1])
    assert [s is not None for s in by_two] == [False, False, True, False, True]


def test_dead_letters_add_up_to_the_threshold() -> None:
    said = run(Rule(1, "dead_letters", None, 3, 9), [0, 1, 2, 3, 3, 10])
    assert said[:3] == [None, None, None]
    assert said[3] == (False, "3 new dead letters (3 in all): detail")
    assert said[4] is None
    assert said[5] == (False, "7 new dead letters (10 in all): detail")


def test_chat_digests_are_cut_and_the_webhook_gets_everything() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    alerts = [DigestAlert(i, "failing", i, i % 2 == 0, f"m{i}", at) for i in range(1, 61)]
    slack = payload("slack", alerts)
    lines = slack["text"].split("\n")
    assert lines[0] == "*metre*: 30 problems, 30 recoveries"
    assert len(lines) == 1 + MAX_LINES + 1
    assert lines[-1].startswith("… and 10 more")
    assert "username" not in slack
    mm = payload("mattermost", alerts[:1])
    assert mm["text"].startswith("**metre**: 1 problem\n")
    assert mm["username"] == "metre"
    hook = payload("webhook", alerts)
    assert len(hook["alerts"]) == 60
    assert hook["alerts"][0] == {
        "id": 1,
        "kind": "failing",
        "repo_id": 1,
        "resolved": False,
        "message": "m1",
        "raised_at": "2026-01-01T00:00:00+00:00",
    }


def test_lagging_speaks_when_it_starts_and_when_it_caught_up() -> None:
    rule = Rule(1, "lagging", None, 0, 9)
    said = run(rule, [0, 1, 1, 0])
    assert said == [
        None,
        (False, "https://example.com/r is lagging: detail"),
        None,
        (True, "https://example.com/r caught up: its head is applied"),
    ]
