"""Hostile repositories: each gets a clear per-repository error or a bounded, correct result,
and never stops the others (real poller, real PostgreSQL registry, in-process bus, git oracle).

Big cases print their time and peak memory (resource.getrusage; ru_maxrss is the process's
high-water mark, so it is an upper bound for the case).
"""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metre.contracts.bus import InMemoryBus
from metre.contracts.events import decode
from metre.ingest.git.errors import RepositoryError
from metre.ingest.mirror import open_mirror, resolve_head
from metre.ingest.poller import Poller, PollerConfig
from metre.processors.store import PgStore
from tests.fixtures.gitrepo import GitRepoBuilder, git_env, run_git

TOPIC = "commits"


def _good(path: Path) -> GitRepoBuilder:
    b = GitRepoBuilder(path)
    b.write("a.txt", b"one\n")
    b.commit("first", date="2021-01-01T00:00:00+0000")
    return b


def truncated_pack(path: Path) -> Path:
    b = _good(path)
    b.write("b.txt", b"two\n" * 1000)
    b.commit("second", date="2021-01-02T00:00:00+0000")
    b.git("repack", "-a", "-d", "-q")
    (pack,) = (path / ".git" / "objects" / "pack").glob("*.pack")
    data = pack.read_bytes()
    pack.chmod(0o644)
    pack.write_bytes(data[: len(data) // 2])
    return path


def missing_object(path: Path) -> Path:
    b = _good(path)
    blob = b.git("rev-parse", "HEAD:a.txt").decode().strip()
    (path / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    return path


def symlink_loop(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path)
    return path


def dot_git_file(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / ".git").write_bytes(b"gitdir: /nonexistent/metre/elsewhere\n")
    return path


def dot_git_garbage(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / ".git").write_bytes(b"\xff\xfe not a gitdir pointer \x00\n" * 10)
    return path


def absurd(path: Path) -> Path:
    """Dates git itself writes without complaint but no calendar library likes."""
    b = _good(path)
    for who, message in (
        (b"Year Zero <y0@example.com> -62198755200 +0000", b"year 0\n"),
        (b"Year Max <y9@example.com> 253402300799 +0000", b"year 9999\n"),
        (b"Far Future <ff@example.com> 999999999999 +0000", b"year 33658\n"),
        (b"Offset <off@example.com> 1600000000 +9959", b"offset +9959\n"),
        (b"Offset <off@example.com> 1600000000 -9959", b"offset -9959\n"),
        (b"Before Epoch <neg@example.com> -1 -0130", b"negative timestamp\n"),
        (b"No Date <nd@example.com>", b"no date at all\n"),
    ):
        b.raw_commit(who, who, message)
    return path


def garbage_date(path: Path) -> Path:
    """A date dulwich cannot parse (git fsck calls it badDate; git log shows no date)."""
    b = _good(path)
    who = b"Garbage <g@example.com> 12x34 +0000"
    b.raw_commit(who, who, b"garbage date\n")
    return path


def non_utf8(path: Path) -> Path:
    b = _good(path)
    b.write(b"caf\xe9/\xff\xfe.txt", b"latin-1 path\n")
    b.commit("non-utf8 path", date="2021-01-02T00:00:00+0000")
    b.raw_commit(
        b"\xff\xfe\xfd <\xe9@example.com> 1600000000 +0000",
        b"N\xe4me <n@example.com> 1600000000 +0000",
        b"\xff message \xc3\x28 invalid\n\nbody \xe9\n",
    )
    b.raw_commit(
        b"Enc <e@example.com> 1600000001 +0000",
        b"Enc <e@example.com> 1600000001 +0000",
        b"declared but bogus\n",
        extra_headers=b"encoding no-such-charset\n",
    )
    run_git(path, "update-ref", b"refs/heads/br\xe9\xff", "HEAD")
    run_git(path, "update-ref", b"refs/tags/t\xff", "HEAD")
    return path


HOSTILE: dict[str, tuple[Callable[[Path], Path], str | None]] = {
    # name: (builder, None for "ingests correctly" or a fragment of the expected error)
    "truncated-pack": (truncated_pack, "corrupt or unreadable (ValueError)"),  # checksum
    "missing-object": (missing_object, "corrupt or unreadable"),
    "symlink-loop": (symlink_loop, "does not exist or is not a directory"),
    "dot-git-file": (dot_git_file, "no object store"),
    "dot-git-garbage": (dot_git_garbage, "cannot fetch"),
    "absurd-dates": (absurd, None),
    "garbage-date": (garbage_date, None),
    "non-utf8": (non_utf8, None),
}


async def test_hostile_repositories_fail_alone_with_clear_errors(
    tmp_path: Path, store: PgStore
) -> None:
    good = _good(tmp_path / "good")
    ids: dict[str, int] = {}
    for name, (build, _) in HOSTILE.items():
        ids[name] = (await store.add_repo(str(build(tmp_path / name)), None)).id
    good_id = (await store.add_repo(str(good.path), None)).id
    bus = InMemoryBus(partitions=2)
    await bus.start()
    await bus.ensure_topics([TOPIC])
    poller = Poller(bus, store, PollerConfig(mirrors_dir=tmp_path / "m", topic=TOPIC))
    for _ in range(len(ids) + 1):
        row = await store.claim_due_repo(60.0)
        assert row is not None
        await poller.poll(row)
    await bus.stop()
    good_row = await store.get_repo(good_id)
    assert good_row is not None
    assert (good_row.state, good_row.error, good_row.head) == ("idle", None, good.head())
    for name, (_, expected) in HOSTILE.items():
        row = await store.get_repo(ids[name])
        assert row is not None
        if expected is None:
            assert (row.state, row.error) == ("idle", None), (name, row.error)
            assert row.head == run_git(tmp_path / name, "rev-parse", "HEAD").decode().strip()
        else:
            assert row.state == "failed", name
            assert row.error is not None
            assert expected in row.error, (name, row.error)
            assert "Traceback" not in row.error
            assert 'File "' not in row.error
            assert len(row.error) < 500, row.error


def test_absurd_dates_are_read_like_git(tmp_path: Path) -> None:
    """Each absurd commit becomes an event; timestamps git can name agree with git."""
    from dulwich.repo import Repo

    from metre.ingest.commits import commit_event
    from metre.ingest.git.graph import new_commits

    src = absurd(tmp_path / "absurd")
    mirror = open_mirror(tmp_path / "m", 1, str(src))
    head = resolve_head(mirror, None)
    with Repo(str(mirror)) as repo:
        shas = new_commits(repo, head, None)
        events = [commit_event(repo, 1, sha) for sha in shas]
    assert len(events) == 8
    git_ts = run_git(src, "log", "--format=%H %at", "HEAD").decode().split("\n")
    stamps = {
        sha: int(ts) if ts else None for sha, ts in (line.split(" ") for line in git_ts if line)
    }
    by_summary = {e.summary: e for e in events}
    assert set(stamps) == {e.sha for e in events}
    # Instants a datetime can hold agree with git (the offset +9959 is dropped, not the time).
    for summary in ("year 9999", "offset +9959", "offset -9959"):
        event = by_summary[summary]
        assert int(event.author.time.timestamp()) == stamps[event.sha], summary
    # git reads no date in a negative timestamp (%at is empty, git log shows the epoch).
    negative = by_summary["negative timestamp"]
    assert stamps[negative.sha] is None
    assert negative.author.time == datetime(1970, 1, 1, tzinfo=UTC)
    assert negative.author.time_raw == "-1 -0130"
    # git shows no date for year 0 (a negative timestamp) or none: the epoch, flagged; a year
    # after 9999 is the last second a datetime holds, flagged (tests/ingest/test_dates.py).
    for summary in ("year 0", "no date at all"):
        assert by_summary[summary].author.time == datetime(1970, 1, 1, tzinfo=UTC), summary
    assert by_summary["year 33658"].author.time == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert by_summary["year 33658"].author.time_raw == "999999999999 +0000"


def _rusage_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fast_import(path: Path, stream: Callable[[subprocess.Popen[bytes]], None]) -> None:
    path.mkdir(parents=True)
    env = git_env(path.parent / f".{path.name}-home")
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet"], cwd=path, stdin=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None
    stream(proc)
    proc.stdin.close()
    assert proc.wait() == 0


def _ingest(tmp_path: Path, src: Path) -> tuple[list[int], float, float]:
    """Mirror and build the events of `src`; (files per event, seconds, peak MB)."""
    from dulwich.repo import Repo

    from metre.ingest.commits import commit_event
    from metre.ingest.git.graph import new_commits

    started = time.perf_counter()
    mirror = open_mirror(tmp_path / "m", 1, str(src))
    head = resolve_head(mirror, None)
    with Repo(str(mirror)) as repo:
        files = [len(commit_event(repo, 1, s).files) for s in new_commits(repo, head, None)]
    return files, time.perf_counter() - started, _rusage_mb()


@pytest.mark.slow
def test_commit_with_100k_files(tmp_path: Path) -> None:
    n = 100_000

    def stream(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        w = proc.stdin.write
        w(b"blob\nmark :1\ndata 6\nsame!\n")
        w(b"commit refs/heads/main\ncommitter A <a@x> 1600000000 +0000\ndata 4\nbig\n")
        for i in range(n):
            w(b"M 100644 :1 d%03d/f%06d.txt\n" % (i % 997, i))
        w(b"\n")

    src = tmp_path / "wide"
    _fast_import(src, stream)
    files, seconds, peak = _ingest(tmp_path, src)
    git_count = len(run_git(src, "ls-tree", "-r", "--name-only", "HEAD").splitlines())
    print(f"\n100k files: {seconds:.1f} s, peak RSS {peak:.0f} MB")
    assert files == [git_count] == [n]


@pytest.mark.slow
def test_50mb_blob(tmp_path: Path) -> None:
    size = 50 * 1024 * 1024
    line = b"0123456789abcdef" * 4 + b"\n"  # 65-byte text lines

    def stream(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        w = proc.stdin.write
        body = line * (size // len(line))
        w(b"blob\nmark :1\ndata %d\n" % len(body))
        w(body)
        w(b"\ncommit refs/heads/main\ncommitter A <a@x> 1600000000 +0000\ndata 4\nbig\n")
        w(b"M 100644 :1 big.txt\n\n")

    src = tmp_path / "fat"
    _fast_import(src, stream)
    started = time.perf_counter()
    mirror = open_mirror(tmp_path / "m", 1, str(src))
    from dulwich.repo import Repo

    from metre.ingest.commits import commit_event

    with Repo(str(mirror)) as repo:
        event = commit_event(repo, 1, resolve_head(mirror, None))
    seconds = time.perf_counter() - started
    print(f"\n50 MB blob: {seconds:.1f} s, peak RSS {_rusage_mb():.0f} MB")
    ((_, added, removed),) = [(f.path, f.added, f.removed) for f in event.files]
    numstat = run_git(src, "show", "--numstat", "--format=", "HEAD").decode().split()
    assert [int(numstat[0]), int(numstat[1])] == [added, removed] == [size // len(line), 0]


def test_events_of_non_utf8_repository_round_trip(tmp_path: Path) -> None:
    from dulwich.repo import Repo

    from metre.contracts.events import encode
    from metre.ingest.commits import commit_event
    from metre.ingest.git.graph import new_commits

    src = non_utf8(tmp_path / "n")
    mirror = open_mirror(tmp_path / "m", 1, str(src))
    head = resolve_head(mirror, None)
    with Repo(str(mirror)) as repo:
        events = [commit_event(repo, 1, s) for s in new_commits(repo, head, None)]
    assert [decode(encode(e)) for e in events] == events
    paths = {p for e in events for p in (f.path for f in e.files)}
    assert any("caf" in str(p) for p in paths)
    with pytest.raises(RepositoryError, match="does not exist"):
        resolve_head(mirror, "no-such-branch")
