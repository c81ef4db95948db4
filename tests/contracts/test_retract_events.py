"""The retraction event of the wire contract: encoding, identity, and decoding by type."""

from __future__ import annotations

import orjson
import pytest

from metre.contracts.events import EventError, RetractEvent, decode, decode_event, encode
from tests.processors.factories import event

SHA = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"


def test_round_trip_and_wire_shape() -> None:
    e = RetractEvent(42, SHA)
    raw = encode(e)
    assert orjson.loads(raw) == {
        "v": 1,
        "type": "retract",
        "id": f"42:{SHA}:retract",
        "repo_id": 42,
        "sha": SHA,
    }
    assert decode_event(raw) == e


def test_ids_of_add_and_retract_differ() -> None:
    c = event(1, repo_id=42)
    assert c.event_id == f"42:{c.sha}"
    assert RetractEvent(42, c.sha).event_id == f"42:{c.sha}:retract"
    assert decode_event(encode(c)) == c


def test_commit_only_decode_refuses_a_retraction() -> None:
    with pytest.raises(EventError, match="retract"):
        decode(encode(RetractEvent(1, SHA)))


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"repo_id": 0}, "repo_id"),
        ({"repo_id": True}, "repo_id"),
        ({"sha": "XYZ"}, "sha"),
        ({"sha": SHA.upper()}, "sha"),
        ({"type": "rewrite"}, "type"),
        ({"v": 2}, "version"),
    ],
)
def test_bad_retractions_are_poison(patch: dict[str, object], reason: str) -> None:
    d = orjson.loads(encode(RetractEvent(1, SHA)))
    d.update(patch)
    with pytest.raises(EventError, match=reason):
        decode_event(orjson.dumps(d))
