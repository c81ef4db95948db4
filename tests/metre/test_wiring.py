"""metre.wiring: what the settings give the roles they build (pure: no server is started)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from pydantic import ValidationError

from metre.contracts.bus import InMemoryBus
from metre.processors.store import PgStore
from metre.settings import Settings
from metre.wiring import make_poller

NO_STORE = cast(PgStore, object())
"""make_poller only hands the store on: nothing here may call it."""


def test_the_poll_lease_reaches_the_poller(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METRE_DATA_DIR", str(tmp_path))
    assert make_poller(Settings(), InMemoryBus(), NO_STORE).config.lease_seconds == 120.0
    monkeypatch.setenv("METRE_POLL_LEASE", "15")
    assert make_poller(Settings(), InMemoryBus(), NO_STORE).config.lease_seconds == 15.0


@pytest.mark.parametrize("value", ["2", "0", "-1", "86400", "soon"])
def test_a_poll_lease_out_of_bounds_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("METRE_POLL_LEASE", value)
    with pytest.raises(ValidationError, match="poll_lease"):
        Settings()
