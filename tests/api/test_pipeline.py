"""GET /api/v1/pipeline: poison records are counted once each, from PostgreSQL (so every API
replica and every processor restart agree), with the latest errors and payloads."""

from __future__ import annotations

import asyncio

import pytest

from ingest.bus import Message
from processors.store import DeadLetter
from tests.api.conftest import COMMITS, DLQ, MetreApi

pytestmark = pytest.mark.integration


async def test_poison_is_counted_once_and_shown(metre_api: MetreApi) -> None:
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
    metre_api: MetreApi, monkeypatch: pytest.MonkeyPatch
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
