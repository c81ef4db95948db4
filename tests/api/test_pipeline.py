"""GET /api/v1/pipeline: poison records are counted once each, from PostgreSQL (so every API
replica and every processor restart agree), with the latest errors and payloads."""

from __future__ import annotations

import asyncio

import pytest

from ingest.bus import Message
from processors.store import DeadLetter
from tests.api.conftest import COMMITS, MetreApi

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
