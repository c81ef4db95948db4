"""The connection counter of tests/fixtures/counting.py: what it counts is exact without a
wait, it does not count its own probe, and it forwards to its target."""

from __future__ import annotations

import socket
import threading

from testkit.broker import free_port
from tests.fixtures.counting import Counting


def test_a_connection_made_before_the_call_is_counted_and_the_probe_is_not() -> None:
    counter = Counting("127.0.0.1", 0)
    try:
        assert counter.accepted() == 0
        socket.create_connection(("127.0.0.1", counter.port)).close()
        assert counter.accepted() == 1  # no wait between the connect and the count
        assert counter.accepted() == 1
    finally:
        counter.close()


def test_connections_are_forwarded_to_the_target() -> None:
    server = socket.create_server(("127.0.0.1", free_port()))

    def echo_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(100).upper())

    thread = threading.Thread(target=echo_once, daemon=True)
    thread.start()
    counter = Counting("127.0.0.1", 0, target=server.getsockname()[:2])
    try:
        with socket.create_connection(("127.0.0.1", counter.port), timeout=5) as client:
            client.sendall(b"hello")
            assert client.recv(100) == b"HELLO"
        assert counter.accepted() == 1
    finally:
        counter.close()
        server.close()
        thread.join(5)
