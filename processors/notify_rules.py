"""Notification rules (pure): when an observation raises an alert, and the alert's words.

Two families. *Level* rules (failing, stale, lag) watch a condition that holds for a while: an
alert is raised when it starts and another when it ends, never while it lasts, so a repository
failing for a day is one message, not one per check. *Change* rules (truck_factor,
dead_letters) watch a number against the value it had when last seen: a fall of the truck
factor, new dead letters. The first observation of a subject only records its value.

`threshold` means, per kind (docs/notifications.md has the table):

- failing: minutes a repository has been failing (`failing_since`) before it is reported;
- stale: hours since a repository's head was last confirmed by a poll;
- lagging: 0 (a repository is lagging or not: its stored head not applied after
  METRE_LAG_INTERVALS poll intervals, as the API's `lagging_reason` says);
- lag: commit events published but not yet applied by the processors;
- truck_factor: how far the truck factor must fall (a fall to 1 is always reported);
- dead_letters: how many new dead letters are reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

RuleKind = Literal["failing", "stale", "lagging", "truck_factor", "dead_letters", "lag"]
KINDS: tuple[str, ...] = get_args(RuleKind)
LEVEL_KINDS = frozenset({"failing", "stale", "lagging", "lag"})
REPO_KINDS = frozenset({"failing", "stale", "lagging", "truck_factor"})
"""Kinds observed per repository; the others observe the pipeline as a whole."""

DEFAULT_THRESHOLDS: dict[str, float] = {
    "failing": 30.0,
    "stale": 24.0,
    "lagging": 0.0,
    "truck_factor": 1.0,
    "dead_letters": 1.0,
    "lag": 10_000.0,
}
PIPELINE = "pipeline"


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    kind: str
    repo_id: int | None
    threshold: float
    target_id: int

    def covers(self, repo_id: int) -> bool:
        return self.kind in REPO_KINDS and (self.repo_id is None or self.repo_id == repo_id)


@dataclass(frozen=True, slots=True)
class Observation:
    """One value of one subject: `repo:<id>` or `pipeline`, with words to show it by."""

    subject: str
    value: float
    label: str
    repo_id: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Seen:
    """What a rule last recorded of a subject."""

    firing: bool
    value: float | None


@dataclass(frozen=True, slots=True)
class Alert:
    rule_id: int
    target_id: int
    repo_id: int | None
    kind: str
    resolved: bool
    message: str


def subject_of(repo_id: int | None) -> str:
    return PIPELINE if repo_id is None else f"repo:{repo_id}"


def evaluate(rule: Rule, seen: Seen | None, obs: Observation) -> tuple[Seen, Alert | None]:
    """The rule's new record of `obs.subject`, and the alert it raises now, if any."""
    if rule.kind in LEVEL_KINDS:
        firing = obs.value > rule.threshold
        was = seen.firing if seen is not None else False
        record = Seen(firing, obs.value)
        if firing == was:
            return record, None
        return record, _alert(rule, obs, resolved=not firing, previous=None)
    previous = seen.value if seen is not None else None
    record = Seen(False, obs.value)
    if previous is None:
        return record, None
    if rule.kind == "truck_factor":
        if obs.value >= previous:
            return record, None  # a rise is not news; it is the new baseline
        if obs.value > 1 and previous - obs.value < rule.threshold:
            # Not far enough yet: keep the old baseline so that small falls add up.
            return Seen(False, previous), None
    elif rule.kind == "dead_letters" and obs.value - previous < rule.threshold:
        # Not enough new ones yet: keep the old baseline so that a trickle adds up.
        return Seen(False, previous), None
    return record, _alert(rule, obs, resolved=False, previous=previous)


def _alert(rule: Rule, obs: Observation, *, resolved: bool, previous: float | None) -> Alert:
    return Alert(
        rule.id,
        rule.target_id,
        obs.repo_id,
        rule.kind,
        resolved,
        describe(rule, obs, resolved, previous),
    )


def _amount(value: float, unit: str) -> str:
    n = round(value, 1)
    text = f"{int(n)}" if n == int(n) else f"{n}"
    return f"{text} {unit}" if n == 1 else f"{text} {unit}s"


def describe(rule: Rule, obs: Observation, resolved: bool, previous: float | None) -> str:
    """One line a person reads in chat."""
    detail = f": {obs.detail}" if obs.detail else ""
    if rule.kind == "failing":
        if resolved:
            return f"{obs.label} polls again"
        return f"{obs.label} has been failing for {_amount(obs.value, 'minute')}{detail}"
    if rule.kind == "stale":
        if resolved:
            return f"{obs.label} is fresh again"
        return f"{obs.label} has not been confirmed for {_amount(obs.value, 'hour')}{detail}"
    if rule.kind == "lagging":
        if resolved:
            return f"{obs.label} caught up: its head is applied"
        return f"{obs.label} is lagging{detail}"
    if rule.kind == "lag":
        if resolved:
            return f"the processors caught up ({_amount(obs.value, 'event')} behind)"
        return (
            f"the processors are {_amount(obs.value, 'event')} behind "
            f"(threshold {_amount(rule.threshold, 'event')})"
        )
    if rule.kind == "truck_factor":
        was = int(previous) if previous is not None else "?"
        return f"{obs.label}: truck factor fell from {was} to {int(obs.value)}{detail}"
    new = int(obs.value - (previous or 0))
    return f"{_amount(new, 'new dead letter')} ({int(obs.value)} in all){detail}"
