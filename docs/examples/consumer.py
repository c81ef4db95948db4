"""An example consumer of metre's topics, with aiokafka: it prints every metric update and
holds, per repository, the set of commits metre published, as docs/events.md asks of consumers.

    python docs/examples/consumer.py --bootstrap localhost:9092 [--prefix metre]

- Commit and retraction events (`<prefix>.commits`) are deduplicated by state, never by offset
  or id: a commit event adds its sha unless held, a retraction removes it if held. Redelivery of
  either is a no-op, and a commit can come back after a retraction (a .mailmap change).
- Metric updates (`<prefix>.metric-updates`) are signals to re-read metrics over the API; one
  whose `generation` is not above the last seen for its repository is a redelivery, dropped.
- A removal notice (`"removed": true`) drops the repository; repository ids are never reused,
  so whatever still arrives for it afterwards is dropped too.
- A record whose `v` is not 1 is skipped with a warning (the contract's rule); unknown fields
  are ignored. docs/asyncapi.yaml and docs/schemas/ describe every payload.

It keeps its state in memory, so it reads the topics from the beginning at every start and
commits no offsets (no consumer group). A consumer that keeps its state in a database commits
its offsets with that state instead, in one transaction, as metre's processors do.

Output, one JSON object per line:
    {"event": "metric-update", "repo_id": 42, "generation": 17, "head": "...",
     "metrics": ["activity", ...], "held": 120}
    {"event": "commits", "repo_id": 42, "held": 120, "added": 3, "retracted": 0,
     "duplicates": 0, "last": "..."}   (per repository, after each fetch that had events;
                                        `last`: the sha of its last commit or retraction event)
    {"event": "removed", "repo_id": 42}
    {"event": "stopped", "held": {"42": 120}, "duplicates": 5}   (on SIGINT or SIGTERM)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord

VERSION = 1


@dataclass
class State:
    held: dict[int, set[str]] = field(default_factory=dict)
    generation: dict[int, int] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    duplicates: int = 0

    def on_event(
        self, e: dict[str, Any], tally: Counter[tuple[int, str]], last: dict[int, str]
    ) -> None:
        """A commit or retraction event, applied by state; other types (a tags event) are not
        this consumer's business: skipped, as any type a consumer does not know."""
        if e["type"] not in ("commit", "retract"):
            return
        repo, sha = e["repo_id"], e["sha"]
        if repo in self.removed:
            return
        last[repo] = sha
        held = self.held.setdefault(repo, set())
        if e["type"] == "commit" and sha not in held:
            held.add(sha)
            tally[repo, "added"] += 1
        elif e["type"] == "retract" and sha in held:
            held.discard(sha)
            tally[repo, "retracted"] += 1
        elif e["type"] in ("commit", "retract"):
            self.duplicates += 1
            tally[repo, "duplicates"] += 1

    def on_update(self, u: dict[str, Any]) -> dict[str, Any] | None:
        """A metric update: the line to print, or None for a redelivery or a removed repository."""
        repo = u["repo_id"]
        if repo in self.removed:
            return None
        if u.get("removed"):
            self.removed.add(repo)
            self.held.pop(repo, None)
            return {"event": "removed", "repo_id": repo}
        if u["generation"] <= self.generation.get(repo, -1):
            self.duplicates += 1
            return None
        self.generation[repo] = u["generation"]
        return {
            "event": "metric-update",
            "repo_id": repo,
            "generation": u["generation"],
            "head": u["head"],
            "metrics": u["metrics"],
            "held": len(self.held.get(repo, ())),
        }


def emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def payload(r: ConsumerRecord[bytes, bytes]) -> dict[str, Any] | None:
    """The record's JSON object if it is one of a version this consumer knows."""
    try:
        value = json.loads(r.value or b"")
    except ValueError:
        value = None
    if not isinstance(value, dict) or value.get("v") != VERSION:
        print(f"skipped {r.topic}[{r.partition}]@{r.offset}: not a v1 event", file=sys.stderr)
        return None
    return value


async def consume(bootstrap: str, prefix: str, stop: asyncio.Event) -> State:
    commits, updates = f"{prefix}.commits", f"{prefix}.metric-updates"
    consumer = AIOKafkaConsumer(
        commits,
        updates,
        bootstrap_servers=bootstrap,
        group_id=None,  # every partition, no offsets committed: the state is rebuilt each start
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    state = State()
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            tally: Counter[tuple[int, str]] = Counter()
            last: dict[int, str] = {}
            # Each partition's records in order; one repository lives in one partition.
            for tp, records in sorted(batches.items(), key=lambda b: (b[0].topic, b[0].partition)):
                for r in records:
                    value = payload(r)
                    if value is None:
                        continue
                    if tp.topic == commits:
                        state.on_event(value, tally, last)
                    elif (line := state.on_update(value)) is not None:
                        emit(line)
            for repo in sorted(last):
                if repo in state.held:
                    emit(
                        {
                            "event": "commits",
                            "repo_id": repo,
                            "held": len(state.held[repo]),
                            "added": tally[repo, "added"],
                            "retracted": tally[repo, "retracted"],
                            "duplicates": tally[repo, "duplicates"],
                            "last": last[repo],
                        }
                    )
    finally:
        await consumer.stop()
    return state


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers (host:port)")
    p.add_argument("--prefix", default="metre", help="METRE_TOPIC_PREFIX of metre's roles")
    args = p.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    state = await consume(args.bootstrap, args.prefix, stop)
    held = {str(repo): len(shas) for repo, shas in sorted(state.held.items())}
    emit({"event": "stopped", "held": held, "duplicates": state.duplicates})


if __name__ == "__main__":
    asyncio.run(main())
