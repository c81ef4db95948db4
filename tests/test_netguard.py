"""The connect guard itself: loopback and unix sockets pass, anything else is refused."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from pathlib import Path

import pytest

from tests import netguard


def _listener(family: int, host: str) -> socket.socket:
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((host, 0))
    server.listen(1)
    return server


@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_loopback_passes(family: int, host: str) -> None:
    with _listener(family, host) as server, socket.socket(family, socket.SOCK_STREAM) as c:
        c.connect(server.getsockname()[:2])
    assert netguard.take_violations() == []


def test_unix_socket_passes(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as c:
        server.bind(path)
        server.listen(1)
        c.connect(path)
    assert netguard.take_violations() == []


@pytest.mark.parametrize(
    "address",
    [("192.0.2.1", 443), ("10.0.0.1", 80), ("169.254.169.254", 80), ("8.8.8.8", 53)],
)
def test_other_ipv4_refused_before_any_packet(address: tuple[str, int]) -> None:
    with socket.socket() as s, pytest.raises(netguard.GuardedConnect):
        s.connect(address)
    with socket.socket() as s, pytest.raises(netguard.GuardedConnect):
        s.connect_ex(address)
    assert len(netguard.take_violations()) == 2


@pytest.mark.parametrize("host", ["2001:db8::1", "64:ff9b::a00:1", "::ffff:10.0.0.1"])
def test_other_ipv6_refused(host: str) -> None:
    with socket.socket(socket.AF_INET6) as s, pytest.raises(netguard.GuardedConnect):
        s.connect((host, 443))
    assert netguard.take_violations() == [f"{host} port 443"]


async def test_asyncio_connections_are_guarded() -> None:
    with pytest.raises(netguard.GuardedConnect):
        await asyncio.open_connection("192.0.2.1", 9418)
    assert netguard.take_violations() == ["192.0.2.1 port 9418"]


def test_a_refusal_in_a_thread_is_recorded() -> None:
    def attempt() -> None:
        # swallowed, as a fetch error would be
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect(("192.0.2.7", 22))

    t = threading.Thread(target=attempt)
    t.start()
    t.join()
    assert netguard.take_violations() == ["192.0.2.7 port 22"]
