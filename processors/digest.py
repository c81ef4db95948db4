"""A digest of alerts as each kind of target wants it (pure).

Slack and Mattermost incoming webhooks both take `{"text": ...}` with their own light markdown
(`*bold*` for Slack's mrkdwn, `**bold**` for Mattermost); Mattermost also honours `username`.
The generic webhook gets every alert as a JSON object, for programs. Long digests are cut to
`MAX_LINES` lines in chat (the API keeps every alert).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_LINES = 50


@dataclass(frozen=True, slots=True)
class DigestAlert:
    id: int
    kind: str
    repo_id: int | None
    resolved: bool
    message: str
    raised_at: datetime


def payload(kind: str, alerts: Sequence[DigestAlert], *, source: str = "metre") -> dict[str, Any]:
    """The JSON body POSTed to a target of `kind` (slack, mattermost or webhook)."""
    if kind == "webhook":
        return {
            "v": 1,
            "type": "notification-digest",
            "source": source,
            "alerts": [
                {
                    "id": a.id,
                    "kind": a.kind,
                    "repo_id": a.repo_id,
                    "resolved": a.resolved,
                    "message": a.message,
                    "raised_at": a.raised_at.isoformat(),
                }
                for a in alerts
            ],
        }
    bold = "**" if kind == "mattermost" else "*"
    problems = sum(not a.resolved for a in alerts)
    head = f"{bold}{source}{bold}: {_count(problems, 'problem')}"
    if len(alerts) > problems:
        head += f", {_count(len(alerts) - problems, 'recovery', 'recoveries')}"
    lines = [f"{'✅' if a.resolved else '⚠️'} {a.message}" for a in alerts[:MAX_LINES]]
    if len(alerts) > MAX_LINES:
        lines.append(f"… and {len(alerts) - MAX_LINES} more (GET /api/v1/notifications/alerts)")
    body: dict[str, Any] = {"text": "\n".join([head, *lines])}
    if kind == "mattermost":
        body["username"] = source
    return body


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"
