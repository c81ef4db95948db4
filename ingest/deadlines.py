"""Deadlines of one fetch from a remote: connect, idle and total (I/O: a timer thread).

A remote that accepts and never answers, or trickles a byte every few seconds, must not hold
a poller: every network fetch runs under a `FetchClock`.

- connect: each TCP connection (git://, http(s)) must be established within
  ``connect`` seconds; ssh gets ``ConnectTimeout``.
- idle: each read waits at most ``idle`` seconds for a byte (a socket timeout on git:// and
  http(s); ssh's keep-alives detect a peer that stopped answering).
- name resolution: the remote's host must resolve within ``connect`` seconds too (a resolver
  that never answers would otherwise hold the poller before any deadline starts).
- total: the whole transfer ends within ``total`` seconds, a fetch from a local path too (its
  object walk checks the clock between objects). When the time is up the clock
  shuts down every socket the fetch opened and kills its ssh processes, so the blocked read
  returns at once and the fetch fails; nothing else of the process is touched.

`FetchClock.explain` turns the failure that follows into a sentence naming the deadline and
the setting that sets it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_SSH_CONNECT_TIMEOUT = re.compile(
    r"Connection to \S+ port \d+ timed out|Connection timed out during banner exchange|"
    r"connect to host \S+ port \d+: Connection timed out"
)
"""What OpenSSH prints when its ConnectTimeout passes (TCP connect or banner exchange)."""

__all__ = [
    "ConnectTimedOut",
    "FetchClock",
    "FetchDeadlines",
    "IdleTimedOut",
    "ResolveTimedOut",
    "resolve_within",
]


@dataclass(frozen=True, slots=True)
class FetchDeadlines:
    """Seconds (METRE_FETCH_CONNECT_TIMEOUT, METRE_FETCH_IDLE_TIMEOUT, METRE_FETCH_TIMEOUT)."""

    connect: float = 20.0
    idle: float = 120.0
    total: float = 1800.0


class ConnectTimedOut(TimeoutError):
    """No connection within the connect deadline."""


class ResolveTimedOut(ConnectTimedOut):
    """The remote's host name did not resolve within the connect deadline."""


class IdleTimedOut(TimeoutError):
    """The remote sent nothing for the idle deadline."""


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, its causes and contexts, and exceptions carried in ``args`` or ``reason``
    (urllib3's MaxRetryError keeps the real error in ``reason``)."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
    return seen


class FetchClock:
    """The deadlines of one fetch; `start` it, `watch` what it opens, `stop` it at the end."""

    def __init__(self, deadlines: FetchDeadlines) -> None:
        self.deadlines = deadlines
        self.expired = False
        self._lock = threading.Lock()
        self._closers: list[Callable[[], None]] = []
        self._dups: list[socket.socket] = []
        self._timer: threading.Timer | None = None

    def start(self) -> FetchClock:
        if self._timer is not None:
            return self
        self._timer = threading.Timer(self.deadlines.total, self._expire)
        self._timer.daemon = True
        self._timer.name = "metre-fetch-deadline"
        self._timer.start()
        return self

    def stop(self) -> None:
        """End the clock: no more expiry, the descriptors it kept are closed."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._closers.clear()
            dups, self._dups = self._dups, []
        for dup in dups:
            dup.close()

    def __enter__(self) -> FetchClock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check(self) -> None:
        """Raise if the total deadline has passed (before opening anything new)."""
        if self.expired:
            raise TimeoutError("the fetch deadline has passed")

    def on_expiry(self, closer: Callable[[], None]) -> None:
        """Run `closer` when the total deadline passes (at once if it has)."""
        with self._lock:
            if not self.expired:
                self._closers.append(closer)
                return
        with contextlib.suppress(Exception):
            closer()

    def watch_socket(self, sock: socket.socket) -> None:
        """Shut down the connection of `sock` when the deadline passes, whatever wraps it by
        then. A duplicate of its descriptor is kept for that: urllib3 wraps the socket in TLS
        (the original object is detached) and http.client drops its reference when a response
        closes the connection, but a shutdown through any descriptor ends the connection for
        all of them. The duplicates are closed when the clock stops."""
        dup = sock.dup()
        with self._lock:
            self._dups.append(dup)

        def shut() -> None:
            with contextlib.suppress(OSError):
                dup.shutdown(socket.SHUT_RDWR)

        self.on_expiry(shut)

    def abort(self) -> None:
        """End the fetch now (its poll was abandoned): as if the total deadline had passed."""
        self._expire()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            closers, self._closers = self._closers, []
        for closer in closers:
            with contextlib.suppress(Exception):
                closer()

    def explain(self, exc: BaseException) -> str | None:
        """Which deadline `exc` comes from, as a sentence naming its setting; None if none."""
        d = self.deadlines
        if self.expired:
            return f"the fetch did not finish within {d.total:g} s (METRE_FETCH_TIMEOUT)"
        chain = _chain(exc)
        names = {type(e).__name__ for e in chain}
        connect = f"no connection within {d.connect:g} s (METRE_FETCH_CONNECT_TIMEOUT)"
        for e in chain:
            if isinstance(e, ResolveTimedOut):
                return f"{e} within {d.connect:g} s (METRE_FETCH_CONNECT_TIMEOUT)"
        if any(isinstance(e, ConnectTimedOut) for e in chain) or "ConnectTimeoutError" in names:
            return connect
        if any(isinstance(e, TimeoutError) for e in chain) or "ReadTimeoutError" in names:
            return f"the remote sent nothing for {d.idle:g} s (METRE_FETCH_IDLE_TIMEOUT)"
        if any(_SSH_CONNECT_TIMEOUT.search(str(e)) for e in chain):  # ssh's ConnectTimeout
            return connect
        return None


def connect_socket(address: str, port: int, clock: FetchClock) -> socket.socket:
    """A TCP connection to `address` within the connect deadline, reads then bounded by the
    idle deadline, shut down by the clock at the total deadline."""
    clock.check()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(clock.deadlines.connect)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect((address, port))
        except TimeoutError as exc:
            raise ConnectTimedOut(f"no connection to port {port} within the deadline") from exc
        sock.settimeout(clock.deadlines.idle)
    except BaseException:
        sock.close()
        raise
    clock.watch_socket(sock)
    return sock


def resolve_within(
    resolve: Callable[[str, int], Sequence[str]], host: str, port: int, clock: FetchClock
) -> Sequence[str]:
    """`resolve(host, port)` bounded by the connect deadline (and by the total one).

    getaddrinfo cannot be interrupted, so it runs on a daemon thread that is left behind if
    it never returns; the fetch fails with `ResolveTimedOut` and the poller moves on.
    """
    clock.check()
    done = threading.Event()
    result: list[Sequence[str]] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(resolve(host, port))
        except BaseException as exc:  # noqa: BLE001 - handed to the fetch's thread below
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="metre-fetch-resolve", daemon=True).start()
    clock.on_expiry(done.set)
    if not done.wait(clock.deadlines.connect) or not (result or failure):
        clock.check()
        raise ResolveTimedOut(f"host {host!r} did not resolve")
    if failure:
        raise failure[0]
    return result[0]
