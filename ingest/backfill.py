"""Commit events computed in worker processes (I/O: starts processes, reads repositories).

A long backfill is CPU-bound Python (tree diffs, object decoding) plus compiled line counts;
one process uses one core. `EventPool` spreads slices of the commit list over worker processes,
each of which opens the repository itself (dulwich objects do not cross processes) and returns
the encoded events of its slice. Results come back in completion order, not commit order:
metric deltas commute, so the order of additions never matters. At most `in_flight` slices are
pending at any time, so memory stays bounded whatever the length of the history.

Workers are started with the "spawn" method: the poller runs threads (asyncio's executor),
and forking a threaded process can copy a held lock.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from dulwich.repo import Repo

from metre.contracts.events import encode
from metre.ingest.commits import commit_event
from metre.ingest.git.graph import use_commit_graph
from metre.ingest.mailmap import Mailmap

__all__ = ["EventPool", "encode_events", "worker_count"]

_open: dict[str, Repo] = {}
"""Repositories a worker has opened, by path (one per worker in practice)."""


def worker_count(configured: int | None) -> int:
    """Worker processes to use: `configured`, or one per CPU this process may run on."""
    if configured:
        return configured
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def encode_events(
    repo: Repo, repo_id: int, shas: Iterable[str], mailmap: Mailmap | None = None
) -> list[bytes]:
    """The encoded `CommitEvent`s of `shas`, in that order (blocking).

    The cyclic garbage collector is paused meanwhile: a walk creates millions of short-lived
    tuples and no cycles, so the collector's passes over them would find nothing and cost time
    (docs/architecture.md, "Ingest: why it is shaped this way").
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return [encode(commit_event(repo, repo_id, sha, mailmap)) for sha in shas]
    finally:
        if paused:
            gc.enable()


def _die_with_parent() -> None:
    """A worker must not outlive a poller killed with SIGKILL (it would hold the poller's
    pipes and burn a core for nothing): Linux delivers SIGKILL to it when the parent dies."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _worker_slice(path: str, repo_id: int, shas: list[str], mailmap: Mailmap | None) -> list[bytes]:
    repo = _open.get(path)
    if repo is None:
        repo = _open[path] = Repo(path)
        use_commit_graph(repo)  # a backfill: many merges, whose bases the graph finds at once
    return encode_events(repo, repo_id, shas, mailmap)


class EventPool:
    """Worker processes computing encoded commit events; use as a (sync) context manager."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent
        )

    def __enter__(self) -> EventPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers; pending slices are cancelled."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(
        self, path: str, repo_id: int, shas: Sequence[str], mailmap: Mailmap | None
    ) -> Future[list[bytes]]:
        return self._pool.submit(_worker_slice, path, repo_id, list(shas), mailmap)

    async def events(
        self,
        path: str,
        repo_id: int,
        slices: Iterable[Sequence[str]],
        mailmap: Mailmap | None = None,
        in_flight: int | None = None,
    ) -> AsyncIterator[tuple[int, list[bytes]]]:
        """(slice index, its encoded events) as slices complete; at most `in_flight` pending
        (default: twice the workers). A worker's error is raised here; pending slices are
        cancelled when the caller stops iterating."""
        limit = in_flight or 2 * self.workers
        pending: dict[asyncio.Future[list[bytes]], int] = {}
        it = iter(enumerate(slices))
        try:
            while True:
                while len(pending) < limit:
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    i, shas = nxt
                    pending[asyncio.wrap_future(self.submit(path, repo_id, shas, mailmap))] = i
                if not pending:
                    return
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    yield i, fut.result()
        finally:
            for fut in pending:
                fut.cancel()
