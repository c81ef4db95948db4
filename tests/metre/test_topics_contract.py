"""metre's topics as an outside consumer sees them, over the real broker and PostgreSQL: the
distributed roles ingest two repositories, one is force-pushed, records are redelivered, a
poison record is dead-lettered and the other repository is removed. Every record metre wrote
then validates against docs/schemas/ (keys and dead-letter headers too), and the example
consumer of docs/examples/consumer.py, run alongside, ends holding exactly git's commits."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from metre.contracts.bus import Message, Record
from metre.contracts.events import partition_key
from metre.contracts.wire import REPO_KEY_PATTERN
from metre.ingest.kafka_bus import KafkaBus
from testkit.broker import free_port
from testkit.oracle import wait_ingested
from testkit.roles import Roles, role_env, wait_ready
from tests.fixtures.gitrepo import GitRepoBuilder, git_commits, run_git
from tests.metre.test_asyncapi import DOCS, errors_of, payload_validator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONSUMER = DOCS / "examples" / "consumer.py"
POISON = b"this is not an event"


class ConsumerProcess:
    """docs/examples/consumer.py as a process; its JSON lines read from its output file."""

    def __init__(self, bootstrap: str, prefix: str, out: Path) -> None:
        self.out = out
        with out.open("wb") as f:
            self.proc = subprocess.Popen(
                [sys.executable, str(CONSUMER), "--bootstrap", bootstrap, "--prefix", prefix],
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.out.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):  # its warnings, on stderr
                out.append(orjson.loads(line))
        return [x for x in out if isinstance(x, dict)]

    async def wait_for(self, what: str, ok: Callable[[dict[str, Any]], bool]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while not any(ok(x) for x in self.lines()):
            assert self.proc.poll() is None, self.out.read_text(errors="replace")
            assert loop.time() < deadline, f"consumer: no {what}; last: {self.lines()[-3:]}"
            await asyncio.sleep(0.2)

    def stop(self) -> dict[str, Any]:
        """SIGTERM, then its last line (the state it ended with)."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.out.read_text(errors="replace")
        last = self.lines()[-1]
        assert last["event"] == "stopped", last
        return last


@contextlib.asynccontextmanager
async def bus_of(bootstrap: str) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(bootstrap, partitions=4)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


async def read_topic(
    bootstrap: str, topic: str, until: Callable[[list[Record]], bool]
) -> list[Record]:
    """Every record of `topic` from the start (a fresh group), until `until` holds."""
    async with bus_of(bootstrap) as bus:
        consumer = bus.consumer([topic], f"contract-{free_port()}")
        await consumer.start()
        got: list[Record] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        try:
            while not until(got):
                assert loop.time() < deadline, f"{topic}: not seen in 60 s ({len(got)} records)"
                got += await consumer.fetch(10_000, 0.5)
        finally:
            await consumer.stop()
    return got


def _json(r: Record) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(r.value)
    return value


async def test_records_on_the_real_broker_match_the_schemas_and_the_example_consumer_keeps_up(
    tmp_path: Path,
    db_dsn: str,
    kafka_bootstrap: str,
    awkward_repo: Path,
    history_factory: Callable[..., Path],
) -> None:
    src = tmp_path / "src"  # the awkward cases (odd dates, merges), rewritten below
    run_git(tmp_path, "clone", "-q", str(awkward_repo), str(src))
    b = GitRepoBuilder(src)
    doomed = history_factory(commits=40, seed=21)  # removed at the end
    env = role_env(tmp_path / "data", db_dsn, kafka_bootstrap)
    prefix = env["METRE_TOPIC_PREFIX"]
    commits_topic, dlq_topic = f"{prefix}.commits", f"{prefix}.commits.dlq"
    updates_topic = f"{prefix}.metric-updates"
    roles = Roles(env, tmp_path)
    port = free_port()
    roles.start("api", "api", "--port", str(port))
    roles.start("poller", "poller")
    roles.start("processor", "processor")
    consumer: ConsumerProcess | None = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as api:
            await wait_ready(api, roles, timeout=90)  # the roles created the topics
            consumer = ConsumerProcess(kafka_bootstrap, prefix, tmp_path / "consumer.out")
            kept = (await api.post("/api/v1/repos", json={"url": str(src)})).json()["id"]
            gone = (await api.post("/api/v1/repos", json={"url": str(doomed)})).json()["id"]
            await wait_ingested(api, kept, len(git_commits(src)))
            await wait_ingested(api, gone, len(git_commits(doomed)))

            # A force-push: three commits leave the history, two new ones come.
            b.git("reset", "-q", "--hard", "HEAD~3")
            for n in range(2):
                b.write(f"new/{n}.txt", b"new\n" * (n + 1))
                b.commit(f"rewritten {n}", date="2031-01-01T00:00:00+0000")
            await wait_ingested(api, kept, len(git_commits(src)))

            # Redelivery: the current history's commit events once more, and a poison record.
            current = set(git_commits(src))
            records = await read_topic(
                kafka_bootstrap,
                commits_topic,
                lambda rs: (
                    current
                    <= {
                        _json(r)["sha"]
                        for r in rs
                        if r.key == str(kept).encode() and _json(r)["type"] == "commit"
                    }
                ),
            )
            again = [
                r.value
                for r in records
                if r.key == str(kept).encode()
                and _json(r)["type"] == "commit"
                and _json(r)["sha"] in current
            ][:10]
            async with bus_of(kafka_bootstrap) as bus:
                key = partition_key(kept)
                await bus.publish(commits_topic, [Message(key, v) for v in again])
                await bus.publish(commits_topic, [Message(key, POISON)])

            # A commit after them on the same partition: once the consumer holds it, it has
            # seen the duplicates.
            b.write("new/last.txt", b"last\n")
            head = b.commit("the last one", date="2031-01-02T00:00:00+0000")
            want = len(git_commits(src))
            await wait_ingested(api, kept, want)
            resp = await api.delete(f"/api/v1/repos/{gone}")
            assert resp.status_code == 204, resp.text

            # The last commit is the last event of its partition: once the consumer applied it,
            # it has seen every commit event, retraction and duplicate of `kept`.
            await consumer.wait_for(
                "the last commit", lambda x: x["event"] == "commits" and x["last"] == head
            )
            await consumer.wait_for(
                "update of the last commit",
                lambda x: x["event"] == "metric-update" and x.get("head") == head,
            )
            await consumer.wait_for(
                "removal", lambda x: x["event"] == "removed" and x["repo_id"] == gone
            )
            end = consumer.stop()
            printed = consumer.lines()
            consumer = None
            roles.assert_alive()
    finally:
        if consumer is not None:
            consumer.proc.kill()
            consumer.proc.wait()
        codes = roles.stop_all()
        assert all(code == 0 for code in codes.values()), codes

    # The example consumer: git's commits exactly (retractions applied, duplicates dropped).
    caught_up = next(x for x in printed if x["event"] == "commits" and x["last"] == head)
    assert caught_up["held"] == want
    assert end["held"] == {str(kept): want}
    assert end["duplicates"] >= len(again) == 10
    for repo in (kept, gone):  # each update once, in order
        mine = [
            x["generation"]
            for x in printed
            if x.get("event") == "metric-update" and x["repo_id"] == repo
        ]
        assert mine, (repo, printed)
        assert mine == sorted(set(mine)), (repo, mine)

    # Every record metre wrote validates against the checked-in schemas.
    doomed_shas = set(git_commits(doomed))
    commits = await read_topic(
        kafka_bootstrap,
        commits_topic,
        lambda rs: (
            doomed_shas
            <= {_json(r)["sha"] for r in rs if r.value != POISON and _json(r)["type"] == "retract"}
        ),
    )
    seen: set[str] = set()
    for r in commits:
        assert r.key is not None
        assert re.fullmatch(REPO_KEY_PATTERN, r.key.decode()), r.key
        if r.value == POISON:
            continue
        value = _json(r)
        assert errors_of(value) == [], value
        assert r.key == str(value["repo_id"]).encode()
        seen.add(value["type"])
        if "merge_files" in value:
            seen.add("commit.merge_files")
        if any("time_raw" in value.get(who, {}) for who in ("author", "committer")):
            seen.add("commit.time_raw")
    assert seen == {"commit", "retract", "tags", "commit.merge_files", "commit.time_raw"}

    updates_records = await read_topic(
        kafka_bootstrap, updates_topic, lambda rs: any(_json(r).get("removed") for r in rs)
    )
    for r in updates_records:
        value = _json(r)
        assert errors_of(value) == [], value
        assert r.key == str(value["repo_id"]).encode()
    assert {bool(_json(r).get("removed")) for r in updates_records} == {True, False}

    dead = await read_topic(kafka_bootstrap, dlq_topic, lambda rs: bool(rs))
    assert [r.value for r in dead] == [POISON]
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert list(payload_validator("dead-letter-headers").iter_errors(headers)) == []
    assert headers["topic"] == commits_topic
    assert dead[0].key == partition_key(kept)
