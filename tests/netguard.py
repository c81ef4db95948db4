"""A connect guard: no test opens a connection that could leave this machine.

`install` replaces `socket.socket.connect` and `connect_ex` (asyncio's selector loop, asyncpg,
aiokafka, urllib3, httpx and dulwich all connect through them) with versions that allow unix
sockets and loopback addresses (127.0.0.0/8, ::1, and IPv4-mapped forms of 127.0.0.0/8) and
refuse everything else before any packet is sent. A refused connect raises `GuardedConnect`
(an OSError, so code under test sees a connection failure) and is recorded; the autouse
fixture in tests/conftest.py fails the test that made it, also when the connect happened in a
thread whose exception the test never saw. Programs run as subprocesses (git, ssh) are not
covered: tests point them at loopback servers only.
"""

from __future__ import annotations

import _socket
import ipaddress
import socket
import threading
from typing import Any

__all__ = ["GuardedConnect", "install", "is_loopback", "take_violations"]


class GuardedConnect(ConnectionRefusedError):
    """A test tried to connect to an address that is not on this machine."""


_lock = threading.Lock()
_violations: list[str] = []
_installed = False


def is_loopback(host: str) -> bool:
    """True for a loopback IP literal (an IPv4-mapped IPv6 form counts by its IPv4 address)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _allowed(sock: _socket.socket, address: Any) -> str | None:
    """None when `address` may be connected to, else a description of the refused target."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None  # unix sockets, netlink: nothing leaves the machine
    if not isinstance(address, tuple) or not address:
        return repr(address)
    host = str(address[0])
    if is_loopback(host):
        return None
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:  # a name: socket.connect would resolve it, so judge what it resolves to
        try:
            infos = socket.getaddrinfo(host, None, sock.family, socket.SOCK_STREAM)
        except OSError:
            return None  # does not resolve: the connect fails by itself
        if infos and all(is_loopback(str(info[4][0])) for info in infos):
            return None
    return f"{host} port {address[1] if len(address) > 1 else '?'}"


def _record(target: str) -> GuardedConnect:
    with _lock:
        _violations.append(target)
    return GuardedConnect(f"test connect guard: refused a connection to {target}")


def install() -> None:
    """Patch `socket.socket` once per process (idempotent)."""
    global _installed
    if _installed:
        return
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self: _socket.socket, address: Any) -> None:
        refused = _allowed(self, address)
        if refused is not None:
            raise _record(refused)
        original_connect(self, address)

    def connect_ex(self: _socket.socket, address: Any) -> int:
        refused = _allowed(self, address)
        if refused is not None:
            raise _record(refused)
        return original_connect_ex(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    _installed = True


def take_violations() -> list[str]:
    """The refused targets recorded since the last call (and forget them)."""
    with _lock:
        out = list(_violations)
        _violations.clear()
    return out
