"""Freshness: what one poll costs after a push, on big and small histories, next to `git fetch`.

Run: python -P bench/freshness.py [--repos A.git,B.git] [--pushes 50] [--big-pushes 5]
     [--transports local,git,http]

For each repository (default: a generated 82,000-commit history in /work/bench-repos/gen80k.git,
generated on first use with bench/freshness_history.py, and a generated 100-commit one for the
ratio; pass a real public history such as a bare clone of git.git too), a private bare copy is
served as the source (a local path, `git daemon` on 127.0.0.1, `git http-backend` behind a
loopback WSGI server). Then, per push (a work clone commits and pushes into the source):

  git fetch   `git fetch` of the same commits into a bare `git clone --mirror` (the reference)
  fetch       metre's `open_mirror` (the fetch step)
  poll        fetch + tracked head + .mailmap + new-commit walk + every event computed and
              encoded: what the poller does before publishing (CPU measured in-process)

p50 and p99 over the pushes of 1 commit (`--pushes`) and of 100 commits with merges
(`--big-pushes`), CPU per poll, and an idle poll (nothing new). Only loopback is contacted.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from freshness_history import extend, generate, git, git_env

BIG = Path("/work/bench-repos/gen80k.git")
SMALL = Path("/work/bench-repos/gen100.git")


def _load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _served(source: Path, transport: str) -> Iterator[str]:
    """The URL of `source` over `transport`, its server running meanwhile."""
    if transport == "local":
        yield str(source)
        return
    if transport == "git":
        port = _free_port()
        proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
             f"--port={port}", f"--base-path={source.parent}", str(source.parent)],
            env=git_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"git://127.0.0.1:{port}/{source.name}"
        finally:
            proc.terminate()
            proc.wait(10)
        return
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from tests.ingest.test_negotiate import _http_backend

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    trace = source.parent / "http-trace"
    server = make_server("127.0.0.1", 0, _http_backend(source.parent, trace), WSGIServer,
                         handler_class=Quiet)  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{source.name}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        trace.unlink(missing_ok=True)


def _timed(f: Callable[[], Any]) -> tuple[Any, float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    r = f()
    return r, time.perf_counter() - t0, time.process_time() - c0


def _poll(mirrors: Path, url: str, access: Any, known: str | None) -> tuple[str, int, float]:
    """What the poller does before publishing; returns (head, commits, fetch seconds)."""
    from dulwich.repo import Repo

    from ingest.backfill import encode_events
    from ingest.gitdiff import new_commits
    from ingest.mailmap import read_mailmap
    from ingest.mirror import open_mirror, resolve_head

    t0 = time.perf_counter()
    mirror = open_mirror(mirrors, 1, url, access)
    fetched = time.perf_counter() - t0
    head = resolve_head(mirror, None)
    with Repo(str(mirror)) as repo:
        _, mailmap = read_mailmap(repo, head)
        if head == known:
            return head, 0, fetched
        shas = new_commits(repo, head, known)
        encode_events(repo, 1, shas, mailmap)
    return head, len(shas), fetched


def run(repo: Path, transport: str, pushes: int, big_pushes: int) -> None:
    from ingest.mirror import FetchAccess
    from ingest.urlpolicy import UrlPolicy

    access = FetchAccess(
        UrlPolicy(frozenset({"git", "http", "https"}), allow_local_paths=True,
                  allow_private_hosts=True)
    )  # fmt: skip
    with tempfile.TemporaryDirectory(dir="/work/bench-repos") as tmp:
        root = Path(tmp)
        source = root / "srv" / "r.git"
        source.parent.mkdir()
        subprocess.run(["git", "clone", "-q", "--bare", "--local", str(repo), str(source)],
                       check=True, env=git_env())  # fmt: skip
        git(source, "config", "receive.unpackLimit", "100")
        work = root / "work"
        subprocess.run(["git", "clone", "-q", str(source), str(work)], check=True, env=git_env())
        ref = root / "ref.git"
        subprocess.run(["git", "clone", "-q", "--mirror", "--local", str(source), str(ref)],
                       check=True, env=git_env())  # fmt: skip
        commits = int(git(source, "rev-list", "--count", "--all"))
        with _served(source, transport) as url:
            from ingest.mirror import open_mirror, resolve_head

            _, clone_s, _ = _timed(lambda: open_mirror(root / "m", 1, url, access))
            _, git_clone_s, _ = _timed(
                lambda: git(root, "clone", "-q", "--mirror", url, str(root / "ref2.git"))
            )
            head = resolve_head(root / "m" / "1.git", None)
            print(
                f"  first clone of {commits} commits: {clone_s:.2f} s "
                f"(git clone --mirror {git_clone_s:.2f} s; the backfill is bench/ingest.py's)"
            )
            _poll(root / "m", url, access, head)  # warm: imports, page cache
            _, idle_s, idle_cpu = _timed(lambda: _poll(root / "m", url, access, head))
            print(f"  idle poll: {idle_s * 1000:.0f} ms, CPU {idle_cpu * 1000:.0f} ms")
            for label, count, merges, times in (
                ("1 commit", 1, 0, pushes),
                ("100 commits (10 merges)", 100, 10, big_pushes),
            ):
                gits, fetches, polls, cpus = [], [], [], []
                for i in range(times):
                    extend(work, count, merges, seed=i * 1000 + count)
                    git(work, "push", "-q", "origin", "HEAD")
                    _, g, _ = _timed(lambda: git(ref, "fetch", "-q", "origin"))
                    (head, got, fetched), s, c = _timed(
                        lambda h=head: _poll(root / "m", url, access, h)  # type: ignore[misc]
                    )
                    assert got >= count, (got, count)
                    gits.append(g)
                    fetches.append(fetched)
                    polls.append(s)
                    cpus.append(c)
                gm = statistics.median(gits)
                print(
                    f"  push of {label} x{times}: poll p50 {_pct(polls, 50):.3f} s "
                    f"p99 {_pct(polls, 99):.3f} s, CPU p50 {_pct(cpus, 50):.3f} s; "
                    f"fetch p50 {_pct(fetches, 50):.3f} s p99 {_pct(fetches, 99):.3f} s; "
                    f"git fetch p50 {gm:.3f} s; fetch/git {_pct(fetches, 50) / gm:.2f}x"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repos", default=f"{BIG},{SMALL}")
    parser.add_argument("--pushes", type=int, default=50)
    parser.add_argument("--big-pushes", type=int, default=5)
    parser.add_argument("--transports", default="local,git,http")
    args = parser.parse_args()
    for path, commits in ((BIG, 82_000), (SMALL, 100)):
        if str(path) in args.repos and not path.exists():
            print(f"generating {path} ({commits} commits; once)")
            generate(path, commits)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    for repo in args.repos.split(","):
        for transport in args.transports.split(","):
            print(f"{repo} over {transport} (load {_load()})")
            run(Path(repo), transport, args.pushes, args.big_pushes)
    print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
