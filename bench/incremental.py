"""Merge-heavy generated histories, and what a poll of new commits costs on a long one.

python -P bench/incremental.py generate DIR [--commits 80000] [--tail 100]
    writes a merge-heavy history (testkit/mergeheavy.py: long-lived branches merged
    back and forth, criss-cross and octopus merges, about 30% merges) to DIR; DIR then serves
    as REPO for bench/ingest.py. Prints its commits, merges and the heads.
python -P bench/incremental.py compare [--long DIR] [--commits 80000] [--tail 100]
    the poller's walk and event computation (what `Poller` runs in-process for a poll:
    both `new_commits` directions and `encode_events`) for the `tail` newest commits of
    `main` (merges among them), on top of a long history and on top of a 100-commit one
    with the same generator, in the same run: wall time and CPU time, and their ratio.
    A fresh `Repo` per run, as each poll opens one, after a full garbage collection (the
    previous runs' garbage is not this one's), and no object resolved by an earlier run
    (`metre.ingest.packs.forget_resolved`: the tail is in the history's pack, and an earlier
    run's reads of it are no poller's) and no blob measured by one
    (`metre.ingest.blobmeasures.forget_measures`); the packs stay mapped, as in a running
    poller. The processor is not in it (bench/freshness.py --served times poll -> served through
    `metre up`).
python -P bench/incremental.py compare --fetch ...
    the same, but as a poll meets the commits: a mirror holding the history up to the
    tail's base (a hard-linked copy of a once-made repository without the tail) fetches
    the tail with metre's local fetch (whole objects in a new pack, as every poll writes
    them), then the walk and the events run on the mirror. Fetch included in the figures.
    The mirror is as a running poller holds it: written by an earlier poll (a minute ago), its
    refs read by it (the process's refs cache is warm, as it is from the second poll on) and
    the objects that poll resolved and the blobs it measured still cached: before each timed
    run the process forgets every resolved object and measured blob, then runs that previous
    poll's walk and events (the `tail` commits before the tail's base; on the 100-commit
    history, the whole history) on the mirror, untimed. Its fetch is not replayed (the
    source's cache stays cold: an upper bound).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def generate(path: Path, commits: int, tail: int) -> dict[str, str]:
    from testkit.mergeheavy import generate_merge_heavy_history

    info_file = path.parent / f".{path.name}-info.json"
    if info_file.exists():
        info: dict[str, str] = json.loads(info_file.read_text())
        return info
    info = generate_merge_heavy_history(path, commits, seed=0, tail=tail)
    info_file.write_text(json.dumps(info))
    return info


def one_poll(path: Path, info: dict[str, str]) -> tuple[float, float, int, int]:
    """(wall s, CPU s, new commits, merges) of one poll's walk and events."""
    from dulwich.repo import Repo

    from metre.contracts.events import decode
    from metre.ingest.backfill import encode_events
    from metre.ingest.blobmeasures import forget_measures
    from metre.ingest.git.graph import new_commits
    from metre.ingest.packs import forget_resolved

    forget_resolved()
    forget_measures()
    gc.collect()  # no earlier run's garbage collected in this one's time
    wall, cpu = time.perf_counter(), time.process_time()
    with Repo(str(path)) as repo:
        gone = new_commits(repo, info["main_before_tail"], info["main"])
        shas = new_commits(repo, info["main"], info["main_before_tail"])
        events = encode_events(repo, 1, shas)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert not gone
    merges = sum(decode(e).is_merge for e in events)
    return wall, cpu, len(shas), merges


def _base(path: Path, info: dict[str, str]) -> Path:
    """A bare repository holding `path`'s refs except the tail (its `main` at the tail's base),
    packed by git; made once, next to `path`."""
    import subprocess

    base = path.parent / f".{path.name}-base.git"
    if base.exists():
        return base
    tmp = base.with_suffix(".tmp")
    subprocess.run(["rm", "-rf", str(tmp)], check=True)
    subprocess.run(["git", "init", "-q", "--bare", str(tmp)], check=True)
    refs = subprocess.run(
        ["git", "-C", str(path), "for-each-ref", "--format=%(refname)", "refs/heads"],
        capture_output=True, check=True, text=True,
    ).stdout.split()  # fmt: skip
    specs = [f"{r}:{r}" for r in refs if r != "refs/heads/main" and "/tail" not in r]
    specs.append(f"{info['main_before_tail']}:refs/heads/main")
    subprocess.run(["git", "-C", str(tmp), "fetch", "-q", "--no-tags", str(path), *specs],
                   check=True)  # fmt: skip
    head = subprocess.run(["git", "-C", str(path), "symbolic-ref", "HEAD"],
                          capture_output=True, check=True, text=True).stdout.strip()  # fmt: skip
    subprocess.run(["git", "-C", str(tmp), "symbolic-ref", "HEAD", head], check=True)
    tmp.rename(base)
    return base


def fetch_poll(
    path: Path, info: dict[str, str], work: Path, tail: int
) -> tuple[float, float, int, int]:
    """(wall s, CPU s, new commits, merges) of a poll that fetches the tail into a mirror of
    the history before it, then walks it and computes the events."""
    import shutil
    import subprocess

    from dulwich.repo import Repo

    from metre.contracts.events import decode
    from metre.ingest.backfill import encode_events
    from metre.ingest.git.graph import new_commits
    from metre.ingest.mirror import open_mirror, resolve_head

    mirrors = work / "mirrors"
    shutil.rmtree(mirrors, ignore_errors=True)
    mirrors.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", "--local", str(_base(path, info)),
                    str(mirrors / "1.git")], check=True)  # fmt: skip
    _as_polled_before(mirrors / "1.git")
    _previous_poll(mirrors / "1.git", info, tail)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    mirror = open_mirror(mirrors, 1, str(path), _access())
    head = resolve_head(mirror, "main")
    with Repo(str(mirror)) as repo:
        gone = new_commits(repo, info["main_before_tail"], head)
        shas = new_commits(repo, head, info["main_before_tail"])
        events = encode_events(repo, 1, shas)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert not gone
    assert head == info["main"]
    merges = sum(decode(e).is_merge for e in events)
    return wall, cpu, len(shas), merges


def _previous_poll(mirror: Path, info: dict[str, str], tail: int) -> None:
    """What the previous poll left in the process's object cache: its walk and events (of the
    commits before the tail's base), after every object resolved so far is forgotten."""
    from dulwich.repo import Repo

    from metre.ingest.backfill import encode_events
    from metre.ingest.blobmeasures import forget_measures
    from metre.ingest.git.graph import new_commits
    from metre.ingest.packs import forget_resolved

    start = info["main_before_tail"]
    base = _previous_base(mirror, start, tail)
    forget_resolved()
    forget_measures()
    with Repo(str(mirror)) as repo:
        encode_events(repo, 1, new_commits(repo, start, base))


@functools.cache
def _previous_base(mirror: Path, start: str, tail: int) -> str | None:
    """The first-parent ancestor of `start` below which lie at least `tail` commits newer
    than it (None: the whole history is fewer)."""
    from dulwich.repo import Repo

    from metre.ingest.git.graph import new_commits
    from metre.ingest.git.objects import reader

    with Repo(str(mirror)) as repo:
        rd = reader(repo)
        base = start.encode()
        while True:
            parents = rd.node(base).parents
            if not parents:
                return None
            base = parents[0]
            if len(new_commits(repo, start, base.decode())) >= tail:
                return base.decode()


@functools.cache
def _a_minute_ago() -> float:
    """One time for every run: a mirror's packs keep their mtime from poll to poll."""
    return time.time() - 60


def _as_polled_before(mirror: Path) -> None:
    """The mirror as a running poller holds it: written a minute ago (as by the previous
    poll) and its refs already read once (`metre.ingest.refstore.CACHE`)."""
    import os

    from metre.ingest.refstore import read_refs

    old = _a_minute_ago()
    for root, dirs, files in os.walk(mirror):
        for name in [*dirs, *files]:
            os.utime(Path(root) / name, (old, old), follow_symlinks=False)
    os.utime(mirror, (old, old))
    read_refs(mirror)


@functools.cache
def _access() -> Any:
    from metre.ingest.mirror import FetchAccess
    from metre.ingest.urlpolicy import UrlPolicy

    return FetchAccess(UrlPolicy(frozenset({"https"}), allow_local_paths=True))


def compare(long: Path, commits: int, tail: int, runs: int, fetch: bool = False) -> None:
    from bench.ingest import _load, _machine

    print(f"machine: {_machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        short = Path(tmp) / "short"
        cases = {"short (100)": (short, generate(short, 100, tail))}
        cases[f"long ({commits})"] = (long, generate(long, commits, tail))
        figures = {}
        for name, (path, info) in cases.items():
            before = _load().split("load average:")[-1].strip()
            if fetch:
                _base(path, info)
                work = Path(tmp) / "work"
                samples = [fetch_poll(path, info, work, tail) for _ in range(runs)]
            else:
                samples = [one_poll(path, info) for _ in range(runs)]
            wall = statistics.median(s[0] for s in samples)
            cpu = statistics.median(s[1] for s in samples)
            figures[name] = (wall, cpu)
            print(
                f"{name:<14} {samples[0][2]} new commits ({samples[0][3]} merges): "
                f"wall {wall * 1000:7.1f} ms, "
                f"CPU {cpu * 1000:7.1f} ms (median of {runs}; load before: {before})"
            )
    (sw, sc), (lw, lc) = figures.values()
    print(f"ratio long/short: wall {lw / sw:.2f}, CPU {lc / sc:.2f}")
    print(f"load after: {_load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("dir", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("--long", type=Path, default=None, help="where the long history is kept")
    c.add_argument("--runs", type=int, default=5)
    c.add_argument("--fetch", action="store_true", help="fetch the tail into a mirror first")
    for p in (g, c):
        p.add_argument("--commits", type=int, default=80_000)
        p.add_argument("--tail", type=int, default=100)
    args = parser.parse_args()

    if args.cmd == "generate":
        print(generate(args.dir.resolve(), args.commits, args.tail))
        return
    long = args.long or Path(tempfile.gettempdir()) / f"metre-mergeheavy-{args.commits}"
    compare(long.resolve(), args.commits, args.tail, args.runs, args.fetch)


if __name__ == "__main__":
    main()
