"""GET /api/v1/pipeline: poison records are counted once each, from PostgreSQL (so every API
replica and every processor restart agree), with the latest errors and payloads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from metre.contracts.bus import Message
from metre.processors.busmarks import BusMarks, data_loss_status
from metre.processors.store import DeadLetter
from testkit.pipeline import COMMITS, DLQ, Pipeline

pytestmark = pytest.mark.integration


async def test_poison_is_counted_once_and_shown(metre_api: Pipeline) -> None:
    r = await metre_api.client.get("/api/v1/pipeline")
    assert r.status_code == 200
    assert r.json()["dead_letters"] == {"count": 0, "last": []}

    poison = [Message(b"k", b"not json"), Message(b"k", b'{"v": 1, "type": "nope"}' + b"x" * 5000)]
    await metre_api.bus.publish(COMMITS, poison)
    async with asyncio.timeout(10):
        while metre_api.processor.poison < 2:
            await asyncio.sleep(0.02)

    body = (await metre_api.client.get("/api/v1/pipeline", params={"last": 5})).json()
    assert body["dead_letters"]["count"] == 2
    newest, oldest = body["dead_letters"]["last"]
    assert oldest["payload"] == "not json"
    assert "JSON" in oldest["error"]
    assert (oldest["topic"], oldest["partition"]) == (COMMITS, newest["partition"])
    assert newest["offset"] == oldest["offset"] + 1
    assert newest["payload_bytes"] == len(poison[1].value)
    assert len(newest["payload"]) == 2000  # truncated copy; the DLQ topic keeps it whole

    # Redelivered after a crash before the offsets were committed: not counted again.
    again = DeadLetter(COMMITS, oldest["partition"], oldest["offset"], "again", b"not json")
    await metre_api.store.apply_changes([], [again])
    body = (await metre_api.client.get("/api/v1/pipeline", params={"last": 1})).json()
    assert body["dead_letters"]["count"] == 2
    assert len(body["dead_letters"]["last"]) == 1

    r = await metre_api.client.get("/api/v1/pipeline", params={"last": -1})
    assert r.status_code == 422


async def test_poison_counter_moves_only_once_its_rows_are_committed(
    metre_api: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race behind a flaky run: the counter moved when the record reached the dead-letter
    topic, before the batch's transaction stored its `dead_letters` row, so a reader that
    waited for the counter could find the table still empty."""
    store = metre_api.store
    real = store.apply_changes
    entered, release = asyncio.Event(), asyncio.Event()

    async def held(*args: object, **kwargs: object) -> object:
        entered.set()
        await release.wait()
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "apply_changes", held)
    await metre_api.bus.publish(COMMITS, [Message(b"k", b"not json")])
    try:
        async with asyncio.timeout(10):
            await entered.wait()  # the batch's transaction (with the dead letter's row) is held
        assert sum(metre_api.bus.end_offsets(DLQ).values()) == 1  # the topic copy is out
        assert metre_api.processor.poison == 0
    finally:
        release.set()
    async with asyncio.timeout(10):
        while metre_api.processor.poison < 1:
            await asyncio.sleep(0.01)
    count, _ = await store.dead_letter_summary(1)
    assert count == 1


async def test_freshness_flags_a_head_not_applied_and_clears_it(
    metre_api: Pipeline, random_repo: Path
) -> None:
    """`lagging`/`lagging_reason` in the repository JSON and the pipeline: set once the stored
    head is older than the bound and not applied, cleared once it is."""
    repo_id = await metre_api.ingest(random_repo)
    marks = BusMarks(metre_api.store.pool)
    info = (await metre_api.client.get(f"/api/v1/repos/{repo_id}")).json()
    assert (info["lagging"], info["lagging_reason"]) == (False, None)
    real = info["head"]
    pool = metre_api.store.pool
    await pool.execute("UPDATE repos SET head = $2 WHERE id = $1", repo_id, "f" * 40)
    assert await marks.check_freshness(60) == ([], [])  # stored just now: within the bound
    await pool.execute("UPDATE repos SET head_at = now() - interval '2 minutes'")
    assert await marks.check_freshness(60) == ([repo_id], [])
    info = (await metre_api.client.get(f"/api/v1/repos/{repo_id}")).json()
    assert info["lagging"] is True
    assert "ffffffffffff" in info["lagging_reason"]
    body = (await metre_api.client.get("/api/v1/pipeline")).json()
    assert body["repos"]["lagging"] == [{"id": repo_id, "reason": info["lagging_reason"]}]
    assert body["data_loss"] == {"count": 0, "unhealed": 0, "last": None}
    assert (await data_loss_status(pool)).lagging == 1
    await pool.execute("UPDATE repos SET head = $2 WHERE id = $1", repo_id, real)
    assert await marks.check_freshness(60) == ([], [repo_id])
    info = (await metre_api.client.get(f"/api/v1/repos/{repo_id}")).json()
    assert (info["lagging"], info["lagging_reason"]) == (False, None)
