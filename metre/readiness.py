"""Readiness of a metre process (`/readyz`), the same in every role: named checks, each `up`,
`degraded` (working, but something is wrong: the JSON says what) or `down`.

A check is *required* when the role cannot do its work without it (the database for every role,
the bus for pollers and processors): one of those down makes the process unavailable (503).
Any other check down, or any check degraded, makes it `degraded`: still 200, so an orchestrator
keeps routing to it, with the reason named. The API, for one, keeps serving reads while the bus
is away; only new commits stop flowing in.

`evaluate` is pure; `run_checks` runs the probes (each bounded in time, an error counts as down).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["up", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one probe; `detail` says what is wrong when it is not up."""

    state: State
    detail: str | None = None


Probe = Callable[[], Awaitable["bool | Check"]]
"""A probe answers True (up), False (down) or a `Check` (to name a degraded state)."""

PROBE_TIMEOUT = 2.0
"""A probe that takes longer counts as down: a hung dependency is not ready."""


@dataclass(frozen=True, slots=True)
class Readiness:
    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return 503 if self.status == "unavailable" else 200

    def body(self) -> dict[str, Any]:
        """The JSON of `/readyz`: `checks` maps each name to its state; `degraded` and, when
        unavailable, `error` say why in words."""
        out: dict[str, Any] = {
            "status": self.status,
            "checks": {name: c.state for name, c in self.checks.items()},
        }
        details = {n: c.detail for n, c in self.checks.items() if c.state != "up" and c.detail}
        if details:
            out["details"] = details
        if self.status == "unavailable":
            down = sorted(n for n, c in self.checks.items() if c.state == "down")
            out["error"] = {"status": 503, "message": f"{' and '.join(down)} unreachable"}
        elif self.status == "degraded":
            out["degraded"] = sorted(n for n, c in self.checks.items() if c.state != "up")
        return out


def evaluate(checks: Mapping[str, Check], required: frozenset[str]) -> Readiness:
    """ready: all up; unavailable: a required check down; degraded: anything else not up."""
    if all(c.state == "up" for c in checks.values()):
        status: Literal["ready", "degraded", "unavailable"] = "ready"
    elif any(c.state == "down" and name in required for name, c in checks.items()):
        status = "unavailable"
    else:
        status = "degraded"
    return Readiness(status, dict(checks))


async def _run(probe: Probe, timeout: float) -> Check:
    try:
        async with asyncio.timeout(timeout):
            answer = await probe()
    except TimeoutError:
        return Check("down", f"no answer within {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 (a failing probe is the answer: down)
        return Check("down", type(exc).__name__)
    if isinstance(answer, Check):
        return answer
    return Check("up") if answer else Check("down")


async def run_checks(
    probes: Mapping[str, Probe], required: frozenset[str], timeout: float = PROBE_TIMEOUT
) -> Readiness:
    """Every probe at once, each within `timeout` (those in `probes` when called: a role may
    add one meanwhile)."""
    names, chosen = list(probes), list(probes.values())
    results = await asyncio.gather(*(_run(p, timeout) for p in chosen))
    return evaluate(dict(zip(names, results, strict=True)), required)
