"""Freshness: what one poll costs after a push, on big and small histories, next to `git fetch`.

Run: python -P bench/freshness.py [--repos A.git,B.git] [--pushes 50] [--big-pushes 5]
     [--transports local,git,http,ssh] [--idle-polls 20] [--idle-only] [--all-refs]

For each repository (default: a generated 82,000-commit history, `gen80k.git` under `--work`,
generated on first use with bench/freshness_history.py, and a generated 100-commit one for the
ratio; pass a real public history such as a bare clone of git.git too), a private bare copy is
served as the source (a local path, `git daemon` on 127.0.0.1, `git http-backend` behind a
loopback WSGI server, OpenSSH's sshd on 127.0.0.1 with keys of its own). Then, per push (a
work clone commits and pushes into the source):

  git fetch   `git fetch` of the same commits, over the same transport, into a bare
              `git clone --mirror` (the reference)
  fetch       metre's `open_mirror` (the fetch step)
  poll        fetch + tracked head + .mailmap + release tags (the default patterns) +
              new-commit walk + every event computed and encoded: what the poller does
              before publishing (CPU measured in-process)

p50 and p99 over the pushes of 1 commit (`--pushes`) and of 100 commits with merges
(`--big-pushes`), CPU per poll, and idle polls (nothing new; `--idle-polls` of them, each
next to an idle `git fetch`, whose CPU is its own processes'; `--idle-only`: only those, the
mirror made from the path). The source is a bare clone (branches and tags; `--all-refs`: a
mirror clone, every ref, as a forge advertises its pull-request refs); the reference fetches
branches and tags. Only loopback is contacted.

With `--served`, the same histories go through a `metre up` child process instead (embedded
PostgreSQL, in-process bus, `--work` holds its data): first `POST /repos` until commit HEAD and
every metric are answered by the API, next to `git clone --mirror` + `git log --numstat` of
the same URL in the same run; then per push `POST /repos/{id}/poll` until the API answers the
new commit (`/commits/{sha}`) and a metric whose provenance is at it ("poll -> served"), with
the CPU of the metre process and of its PostgreSQL over that time, metre's peak RSS, and
`git fetch` of the same commits into that mirror clone over the same URL (the reference; over
ssh git connects anew each time, metre keeps its connection: `METRE_SSH_REUSE`).
The last line gives the 100-commit figures of the first repository over the last one.
"""

from __future__ import annotations

import argparse
import os
import resource
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.freshness_history import extend, generate, git, git_env
from testkit.broker import free_port

WORK = Path.home() / ".cache" / "metre-bench"
"""Where the generated histories and the runs' copies live unless `--work` says otherwise."""
BIG, SMALL = "gen80k.git", "gen100.git"


def _load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]


@contextmanager
def _served(source: Path, transport: str) -> Iterator[str]:
    """The URL of `source` over `transport`, its server running meanwhile."""
    if transport == "local":
        yield str(source)
        return
    if transport == "ssh":
        with _ssh_served(source) as url:
            yield url
        return
    from testkit.gitservers import git_daemon, smart_http

    if transport == "git":
        with git_daemon(source.parent, git_env()) as port:
            yield f"git://127.0.0.1:{port}/{source.name}"
        return
    trace = source.parent / "http-trace"
    try:
        with smart_http(source.parent, trace) as port:
            yield f"http://127.0.0.1:{port}/{source.name}"
    finally:
        trace.unlink(missing_ok=True)


@contextmanager
def _ssh_served(source: Path) -> Iterator[str]:
    """`source` over ssh: an OpenSSH server on 127.0.0.1 (the tests' configuration, its own
    keys) and an ``ssh`` first on PATH that uses them, for metre and for git alike (child
    processes inherit PATH)."""
    import getpass
    import shlex
    import shutil

    from testkit.sshd import Sshd, keygen, sshd_config

    base = source.parent.parent / "ssh"
    (base / "bin").mkdir(parents=True)
    if os.geteuid() == 0:  # sshd running as root refuses to start without its privsep dir
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    keygen(base / "host_key")
    keygen(base / "client_key")
    shutil.copy(base / "client_key.pub", base / "authorized_keys")
    port = free_port()
    server = Sshd(sshd_config(base, "127.0.0.1", port), base / "sshd.log")
    key = " ".join((base / "host_key.pub").read_text().split()[:2])
    (base / "known_hosts").write_text(f"127.0.0.1 {key}\n[127.0.0.1]:{port} {key}\n")
    (base / "config").write_text(
        f"IdentityFile {base / 'client_key'}\nIdentitiesOnly yes\n"
        f"UserKnownHostsFile {base / 'known_hosts'}\nGlobalKnownHostsFile /dev/null\n"
    )
    real = shutil.which("ssh")
    assert real is not None, "ssh is missing: install openssh-client"
    wrapper = base / "bin" / "ssh"
    wrapper.write_text(
        f'#!/bin/sh\nexec {shlex.quote(real)} -F {shlex.quote(str(base / "config"))} "$@"\n'
    )
    wrapper.chmod(0o755)
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{base / 'bin'}{os.pathsep}{path}"
    try:
        yield f"ssh://{getpass.getuser()}@127.0.0.1:{port}{source}"
    finally:
        os.environ["PATH"] = path
        server.stop()


def _timed(f: Callable[[], Any]) -> tuple[Any, float, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    r = f()
    return r, time.perf_counter() - t0, time.process_time() - c0


def _poll(mirrors: Path, url: str, access: Any, known: str | None) -> tuple[str, int, float]:
    """What the poller does before publishing; returns (head, commits, fetch seconds)."""
    from dulwich.repo import Repo

    from metre.ingest.backfill import encode_events
    from metre.ingest.git.graph import new_commits
    from metre.ingest.mailmap import read_mailmap
    from metre.ingest.mirror import open_mirror, resolve_head
    from metre.ingest.releases import DEFAULT_PATTERNS, parse_patterns
    from metre.ingest.releasetags import read_release_tags

    t0 = time.perf_counter()
    mirror = open_mirror(mirrors, 1, url, access)
    fetched = time.perf_counter() - t0
    head = resolve_head(mirror, None)
    with Repo(str(mirror)) as repo:
        _, mailmap = read_mailmap(repo, head)
        read_release_tags(repo, parse_patterns(DEFAULT_PATTERNS))  # every poll reads them
        if head == known:
            return head, 0, fetched
        shas = new_commits(repo, head, known)
        encode_events(repo, 1, shas, mailmap)
    return head, len(shas), fetched


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _git_cpu(ref: Path, *args: str) -> tuple[float, float]:
    """(wall, CPU) of one git command in `ref`: its own process and those it waited for
    (`git-remote-http`, `ssh`, `fetch-pack`), from wait4, so a server run by this process
    (the loopback HTTP server's `git http-backend`) is not counted."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["git", "-C", str(ref), *args], env=git_env())
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, (args, proc.returncode)
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def _idle(poll: Callable[[], Any], ref: Path, times: int, transport: str) -> None:
    """Idle polls (nothing new) and idle `git fetch`es of the reference, alternating: p50 of
    wall time and CPU. metre's CPU is the polling thread's (the HTTP server's thread in this
    process is not counted) plus its child processes' (the ssh client; over HTTP the child
    processes are the server's `git http-backend`, shown apart)."""
    walls, cpus, kids, git_walls, git_cpus = [], [], [], [], []
    for _ in range(times):
        k0, c0, t0 = _children_cpu(), time.thread_time(), time.perf_counter()
        poll()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.thread_time() - c0)
        kids.append(_children_cpu() - k0)
        g, gc = _git_cpu(ref, "fetch", "-q", "origin")
        git_walls.append(g)
        git_cpus.append(gc)
    kid = _pct(kids, 50) * 1000
    own = _pct(cpus, 50) * 1000 + (kid if transport == "ssh" else 0.0)
    extra = f" (ssh client {kid:.0f} ms)" if transport == "ssh" else ""
    if transport == "http":
        extra = f" (the server's git http-backend: {kid:.0f} ms more)"
    print(
        f"  idle poll x{times}: p50 {_pct(walls, 50) * 1000:.0f} ms, CPU p50 {own:.1f} ms"
        f"{extra}; git fetch idle p50 {_pct(git_walls, 50) * 1000:.0f} ms, CPU "
        f"{_pct(git_cpus, 50) * 1000:.1f} ms (load {_load()})"
    )


def run(
    repo: Path,
    transport: str,
    pushes: int,
    big_pushes: int,
    under: Path,
    idle_polls: int = 20,
    idle_only: bool = False,
    all_refs: bool = False,
) -> None:
    from metre.ingest.mirror import FetchAccess
    from metre.ingest.transport import SshReuse
    from metre.ingest.urlpolicy import UrlPolicy

    with tempfile.TemporaryDirectory(dir=under) as tmp:
        root = Path(tmp)
        access = FetchAccess(
            UrlPolicy(frozenset({"git", "http", "https", "ssh"}), allow_local_paths=True,
                      allow_private_hosts=True),
            ssh_reuse=SshReuse(root / "ssh-control", 60),  # as metre's default METRE_SSH_REUSE
        )  # fmt: skip
        source = root / "srv" / "r.git"
        source.parent.mkdir()
        kind = "--mirror" if all_refs else "--bare"
        subprocess.run(["git", "clone", "-q", kind, "--local", str(repo), str(source)],
                       check=True, env=git_env())  # fmt: skip
        git(source, "config", "receive.unpackLimit", "100")
        work = root / "work"
        subprocess.run(["git", "clone", "-q", str(source), str(work)], check=True, env=git_env())
        ref = root / "ref.git"
        subprocess.run(["git", "clone", "-q", "--mirror", "--local", str(source), str(ref)],
                       check=True, env=git_env())  # fmt: skip
        # the reference fetches what metre mirrors: branches and tags (git then asks the
        # server for those prefixes only, as metre does)
        git(ref, "config", "--replace-all", "remote.origin.fetch", "+refs/heads/*:refs/heads/*")
        git(ref, "config", "--add", "remote.origin.fetch", "+refs/tags/*:refs/tags/*")
        commits = int(git(source, "rev-list", "--count", "--all"))
        refs = len(git(source, "for-each-ref", "--format=x").splitlines())
        with _served(source, transport) as url:
            from metre.ingest.mirror import open_mirror, resolve_head

            git(ref, "remote", "set-url", "origin", url)  # the reference uses the transport too
            if idle_only:  # the mirror made from the path: only the polls go over `transport`
                open_mirror(root / "m", 1, str(source), access)
            else:
                _, clone_s, _ = _timed(lambda: open_mirror(root / "m", 1, url, access))
                _, git_clone_s, _ = _timed(
                    lambda: git(root, "clone", "-q", "--mirror", url, str(root / "ref2.git"))
                )
                print(
                    f"  first clone of {commits} commits: {clone_s:.2f} s "
                    f"(git clone --mirror {git_clone_s:.2f} s; the backfill is bench/ingest.py's)"
                )
            head = resolve_head(root / "m" / "1.git", None)
            print(f"  the source advertises {refs} refs")
            _poll(root / "m", url, access, head)  # warm: imports, page cache
            _idle(lambda: _poll(root / "m", url, access, head), ref, idle_polls, transport)
            if idle_only:
                return
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


# -- poll -> served through a running `metre up` (embedded mode) ---------------------------

_METRICS = (
    "activity", "authors", "contributors", "punchcard", "commit-size", "languages", "files",
    "hotspots", "ownership", "truck-factor", "coupling",
)  # fmt: skip


class _Up:
    """A `metre up` child process (embedded PostgreSQL, in-process bus) and a client of its API."""

    def __init__(self, root: Path) -> None:
        import httpx
        import psutil

        data = root / "data"
        env = {
            **git_env(),
            "METRE_DATA_DIR": str(data),
            "METRE_LOG_LEVEL": "WARNING",
            "METRE_ALLOWED_SCHEMES": "git,http,https,ssh",
            "METRE_ALLOW_PRIVATE_HOSTS": "true",
        }
        self.log = open(root / "up.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "metre", "up", "--port", "0", "--poll-interval", "86400"],
            env=env, stdout=self.log, stderr=self.log,
        )  # fmt: skip
        runtime = data / "api.json"
        deadline = time.monotonic() + 120
        while not runtime.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"metre up did not start: {(root / 'up.log').read_text()}")
            time.sleep(0.05)
        import json

        base = json.loads(runtime.read_text())["url"]
        self.http = httpx.Client(base_url=f"{base}/api/v1", timeout=60)
        self.ps = psutil.Process(self.proc.pid)
        self.peak_rss = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        """Peak RSS of the metre process (poller, processor and API; not PostgreSQL)."""
        while self._sampling:
            try:
                self.peak_rss = max(self.peak_rss, self.ps.memory_info().rss)
            except Exception:  # the process ended
                return
            time.sleep(0.05)

    def cpu(self) -> tuple[float, float]:
        """(CPU s of the metre process, CPU s of its child processes alive now: PostgreSQL,
        and backfill workers while they run; an exited worker's CPU is not counted)."""
        t = self.ps.cpu_times()
        pg = 0.0
        for child in self.ps.children(recursive=True):
            try:
                c = child.cpu_times()
                pg += c.user + c.system
            except Exception:  # a backend that ended meanwhile
                pass
        return t.user + t.system, pg

    def stop(self) -> None:
        self._sampling = False
        self.http.close()
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def _until_served(up: _Up, repo_id: int, sha: str, deadline: float = 600.0) -> None:
    """Wait until the API answers commit `sha` and a metric whose provenance is at `sha`."""
    end = time.monotonic() + deadline
    while up.http.get(f"/repos/{repo_id}/commits/{sha}").status_code != 200:
        if time.monotonic() > end:
            raise TimeoutError(sha)
        time.sleep(0.005)
    while up.http.get(f"/repos/{repo_id}/metrics/activity").json()["provenance"]["head"] != sha:
        if time.monotonic() > end:
            raise TimeoutError(sha)
        time.sleep(0.005)


def run_served(
    repo: Path, transport: str, pushes: int, big_pushes: int, root_dir: Path
) -> dict[str, float]:
    """`metre add` of `repo` (served over `transport`) to every metric served, next to git,
    then poll -> served per push; returns the 100-commit push figures for the ratio."""
    out: dict[str, float] = {}
    root_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root_dir) as tmp:
        root = Path(tmp)
        source = root / "srv" / "r.git"
        source.parent.mkdir()
        subprocess.run(["git", "clone", "-q", "--bare", "--local", str(repo), str(source)],
                       check=True, env=git_env())  # fmt: skip
        git(source, "config", "receive.unpackLimit", "100")
        work = root / "work"
        subprocess.run(["git", "clone", "-q", str(source), str(work)], check=True, env=git_env())
        commits = int(git(source, "rev-list", "--count", "HEAD"))
        with _served(source, transport) as url:
            # the reference: a mirror clone and git's numstat walk of it, same run
            _, g_clone, _ = _timed(
                lambda: git(root, "clone", "-q", "--mirror", url, str(root / "ref.git"))
            )
            g_log = time.perf_counter()
            subprocess.run(["git", "-C", str(root / "ref.git"), "log", "--numstat", "--no-renames",
                            "--minimal", "--format=%x00%H", "HEAD"],
                           stdout=subprocess.DEVNULL, check=True, env=git_env())  # fmt: skip
            g_log = time.perf_counter() - g_log
            up = _Up(root)
            try:
                cpu0 = up.cpu()
                t0 = time.perf_counter()
                rid = up.http.post("/repos", json={"url": url}).json()["id"]
                head = git(source, "rev-parse", "HEAD").decode().strip()
                _until_served(up, rid, head, deadline=3600)
                for m in _METRICS:
                    assert up.http.get(f"/repos/{rid}/metrics/{m}").status_code == 200, m
                e2e = time.perf_counter() - t0
                cpu1 = up.cpu()
                served = up.http.get(f"/repos/{rid}").json()["commits"]
                assert served == commits, (served, commits)
                ref = g_clone + g_log
                print(
                    f"  metre add -> every metric served, {commits} commits: {e2e:.2f} s "
                    f"(CPU metre {cpu1[0] - cpu0[0]:.1f} s, without its exited workers); "
                    f"git clone --mirror {g_clone:.2f} s + git log --numstat {g_log:.2f} s = "
                    f"{ref:.2f} s; ratio {e2e / ref:.2f}; metre peak RSS "
                    f"{up.peak_rss / 2**20:.0f} MB (load {_load()})"
                )
                for label, count, merges, times in (
                    ("1 commit", 1, 0, pushes),
                    ("100 commits (10 merges)", 100, 10, big_pushes),
                ):
                    walls, cpus, pgs, gits = [], [], [], []
                    for i in range(times):
                        sha = extend(work, count, merges, seed=i * 1000 + count)
                        git(work, "push", "-q", "origin", "HEAD")
                        _, g, _ = _timed(lambda: git(root / "ref.git", "fetch", "-q", "origin"))
                        gits.append(g)
                        c0 = up.cpu()
                        t0 = time.perf_counter()
                        assert up.http.post(f"/repos/{rid}/poll").status_code < 300
                        _until_served(up, rid, sha)
                        walls.append(time.perf_counter() - t0)
                        c1 = up.cpu()
                        cpus.append(c1[0] - c0[0])
                        pgs.append(c1[1] - c0[1])
                    print(
                        f"  push of {label} x{times}: poll -> served p50 {_pct(walls, 50):.3f} s "
                        f"p99 {_pct(walls, 99):.3f} s; CPU p50 metre {_pct(cpus, 50):.3f} s, "
                        f"PostgreSQL {_pct(pgs, 50):.3f} s; git fetch of the same commits "
                        f"p50 {_pct(gits, 50):.3f} s p99 {_pct(gits, 99):.3f} s (load {_load()})"
                    )
                    out[label] = statistics.median(walls)
                    out[label + " cpu"] = statistics.median(cpus)
                    out[label + " pg"] = statistics.median(pgs)
                print(f"  metre peak RSS over the run: {up.peak_rss / 2**20:.0f} MB")
            finally:
                up.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repos", help=f"bare repositories (default: {BIG},{SMALL} under --work)")
    parser.add_argument("--pushes", type=int, default=50)
    parser.add_argument("--big-pushes", type=int, default=5)
    parser.add_argument("--transports", default="local,git,http")
    parser.add_argument(
        "--served", action="store_true",
        help="through a running `metre up`: metre add -> served, then poll -> served per push",
    )  # fmt: skip
    parser.add_argument(
        "--idle-polls", type=int, default=20, help="idle polls measured (not with --served)"
    )
    parser.add_argument(
        "--idle-only", action="store_true",
        help="only the idle polls (the mirror made from the path, not cloned over the transport)",
    )  # fmt: skip
    parser.add_argument(
        "--all-refs", action="store_true",
        help="the source keeps every ref of the repository (a forge's refs/pull/* too), not "
        "only its branches and tags",
    )  # fmt: skip
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args()
    if args.served and (args.idle_only or args.all_refs):
        parser.error("--idle-only and --all-refs measure polls alone: not with --served")
    args.work.mkdir(parents=True, exist_ok=True)
    big_repo, small_repo = args.work / BIG, args.work / SMALL
    if args.repos is None:
        args.repos = f"{big_repo},{small_repo}"
    for path, commits in ((big_repo, 82_000), (small_repo, 100)):
        if str(path) in args.repos and not path.exists():
            print(f"generating {path} ({commits} commits; once)")
            generate(path, commits)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    big: dict[str, dict[str, float]] = {}
    for repo in args.repos.split(","):
        for transport in args.transports.split(","):
            print(f"{repo} over {transport} (load {_load()})")
            if args.served:
                big[f"{repo} {transport}"] = run_served(
                    Path(repo), transport, args.pushes, args.big_pushes, args.work
                )
            else:
                run(Path(repo), transport, args.pushes, args.big_pushes, args.work,
                    args.idle_polls, args.idle_only, args.all_refs)  # fmt: skip
    if args.served and len(big) >= 2:
        items = list(big.items())
        (ln, lf), (sn, sf) = items[0], items[-1]
        key = "100 commits (10 merges)"
        print(
            f"100 commits, poll -> served, {ln} vs {sn}: wall {lf[key] / sf[key]:.2f}x, "
            f"CPU metre {lf[key + ' cpu'] / sf[key + ' cpu']:.2f}x, "
            f"PostgreSQL {lf[key + ' pg'] / max(sf[key + ' pg'], 1e-9):.2f}x"
        )
    print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
