"""Absurd and unparseable dates, against git (git CLI oracle; real poller and PostgreSQL).

Each commit is written by hand (``git hash-object -t commit --literally``) with the same date
text on its author and committer lines, and changes one file, so that its file counts are
checked too. What git 2.39 shows for each is in ingest/gitdate.py's docstring.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dulwich.repo import Repo

from metre.contracts.bus import InMemoryBus
from metre.contracts.events import decode, encode
from metre.ingest import gitdate
from metre.ingest.commits import commit_event
from metre.ingest.git.graph import new_commits
from metre.ingest.mirror import open_mirror, resolve_head
from metre.ingest.poller import Poller, PollerConfig
from metre.processors.runner import Processor
from metre.processors.store import PgStore
from tests.fixtures.gitrepo import GitRepoBuilder, git_numstat, run_git

DATES: dict[str, bytes] = {
    "normal": b"1600000000 +0200",
    "year 10000": b"253402300800 +0000",
    "year 9999 local 10000": b"253402300799 +0100",
    "year 3170843": b"99999999999999 +0000",
    "beyond time_t": b"18446744073709551615 +0000",
    "beyond gmtime": b"67768036191676800 +0000",
    "negative": b"-1 +0000",
    "negative with offset": b"-1 -0130",
    "year 0": b"-62198755200 +0000",
    "zero": b"0 +0000",
    "zero plus one hour": b"0 +0100",
    "before epoch locally": b"0 -0100",
    "missing timestamp": b"+0000",
    "nothing": b"",
    "garbage": b"abc",
    "garbage timestamp": b"12x34 +0000",
    "offset +9999": b"1600000000 +9999",
    "offset -1500": b"1600000000 -1500",
    "offset +12": b"1600000000 +12",
    "offset +0060": b"1600000000 +0060",
    "offset +2400": b"1600000000 +2400",
    "offset INT_MAX": b"1600000000 +2147483647",
    "offset INT_MIN": b"1600000000 -2147483648",
    "offset garbage": b"1600000000 abc",
    "offset sign only": b"1600000000 +",
    "missing offset": b"1600000000",
    "minus zero": b"1600000000 -0000",
    "no space": b"1600000000+0100",
    "trailing text": b"1600000000 +0100 tail",
}


def _commit(b: GitRepoBuilder, label: str, date: bytes, n: int) -> str:
    b.write("f.txt", b"".join(b"line %d\n" % i for i in range(n)))
    b.write(f"{n}.txt", label.encode() + b"\n")
    b.git("add", "-A")
    tree = b.git("write-tree").decode().strip()
    who = b"Who <who@example.com> " + date if date else b"Who <who@example.com>"
    body = b"tree %s\nparent %s\nauthor %s\ncommitter %s\n\n%s\n" % (
        tree.encode(),
        b.head().encode(),
        who,
        who,
        label.encode(),
    )
    sha = b.git("hash-object", "-t", "commit", "--literally", "-w", "--stdin", stdin=body)
    b.git("update-ref", "HEAD", sha.decode().strip())
    return b.head()


def build(path: Path) -> tuple[Path, dict[str, str]]:
    b = GitRepoBuilder(path)
    b.write("f.txt", b"start\n")
    b.commit("root", date="2021-01-01T00:00:00+0000")
    shas = {label: _commit(b, label, date, i + 2) for i, (label, date) in enumerate(DATES.items())}
    b.write("last.txt", b"a normal head\n")
    b.commit("last", date="2021-01-02T00:00:00+0000")
    return path, shas


def _git(repo: Path, fmt: str, sha: str) -> str | None:
    """One placeholder's output, or None when git log stops (it dies on some dates)."""
    out = run_git(repo, "log", "-1", f"--format={fmt}", sha, check=False)
    return out.decode().rstrip("\n") if out else None


def _git_value(shown: str | None) -> tuple[str, int]:
    """(local wall clock, offset in minutes) of a ``%ai`` date, the offset read as git reads
    it (``+0060`` is 60 minutes, as ``+0100`` is)."""
    assert shown
    clock, tz = shown.rsplit(" ", 1)
    n = int(tz[1:])
    minutes = (n // 100) * 60 + n % 100
    return clock, -minutes if tz[0] == "-" else minutes


def _value(t: datetime) -> tuple[str, int]:
    offset = t.utcoffset()
    assert offset is not None
    return t.strftime("%Y-%m-%d %H:%M:%S"), int(offset.total_seconds() // 60)


def _medium_date(repo: Path, sha: str) -> str | None:
    out = run_git(repo, "log", "-1", sha, check=False).decode()
    return next((ln[5:].strip() for ln in out.splitlines() if ln.startswith("Date:")), None)


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    return build(tmp_path_factory.mktemp("dates") / "repo")


def test_dates_are_what_git_shows(dated: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    src, shas = dated
    mirror = open_mirror(tmp_path / "m", 1, str(src))  # dulwich's fetch refuses "12x34"
    head = resolve_head(mirror, None)
    assert head == run_git(src, "rev-parse", "HEAD").decode().strip()
    with Repo(str(mirror)) as repo:
        events = {
            e.sha: e for e in (commit_event(repo, 1, s) for s in new_commits(repo, head, None))
        }
    numstat = git_numstat(src)
    assert set(events) == set(numstat)  # every commit, whatever its date
    for label, sha in shas.items():
        e = events[sha]
        # the rest of the commit is ingested normally: files and counts are git's
        assert [(f.path.encode(), f.added, f.removed) for f in e.files] == numstat[sha], label
        assert decode(encode(e)) == e, label
        for who, person, letter in (("author", e.author, "a"), ("committer", e.committer, "c")):
            at, iso = _git(src, f"%{letter}t", sha), _git(src, f"%{letter}I", sha)
            what = f"{label} ({who})"
            t = person.time
            assert t.tzinfo is not None
            if person.time_raw is None:  # exact: git's wall clock and offset
                assert _git_value(_git(src, f"%{letter}i", sha)) == _value(t), what
                assert int(t.timestamp()) == int(at or "x"), what
                continue
            assert person.time_raw == DATES[label].strip().decode()[:64], what
            if not at:  # git sees no date: %at is empty, the default format shows the epoch
                assert t == gitdate.EPOCH, what
                assert _medium_date(src, sha) == "Thu Jan 1 00:00:00 1970 +0000", what
            elif iso is None:  # git log stops ("Timestamp before Unix epoch"): exact instant
                assert int(t.timestamp()) == int(at), what
            elif iso.startswith("1970-01-01T00:00:00+00:00"):  # git's own fallback
                assert t == gitdate.EPOCH, what
            elif int(at) > int(gitdate.LATEST.timestamp()):  # git shows a year after 9999
                assert t == gitdate.LATEST, what
                assert int(iso.split("-")[0]) > 9999, what
            else:  # instant exact, offset git shows does not fit a timezone (or pushes past 9999)
                assert int(t.timestamp()) == int(at), what
                assert t.utcoffset() == timedelta(0), what
                offset = iso[19:]
                assert offset != "+00:00", what
    flagged = {label for label, sha in shas.items() if events[sha].author.time_raw is not None}
    assert flagged == set(DATES) - {
        "normal", "zero", "zero plus one hour", "offset -1500", "offset +12", "offset +0060",
        "offset INT_MAX", "offset INT_MIN", "minus zero", "no space", "trailing text",
    }  # fmt: skip


def test_oracle_values_spelled_out(dated: tuple[Path, dict[str, str]]) -> None:
    """A few of git's answers written down, so that a git that changes them is noticed."""
    src, shas = dated
    assert _git(src, "%ai", shas["offset +12"]) == "2020-09-13 12:38:40 +0012"
    assert _git(src, "%ai", shas["offset +9999"]) == "2020-09-17 17:05:40 +9999"
    assert _git(src, "%ai", shas["year 10000"]) == "10000-01-01 00:00:00 +0000"
    assert _git(src, "%at|%ai", shas["negative"]) == "|"
    assert _git(src, "%at|%ai", shas["beyond time_t"]) == (
        "18446744073709551615|1970-01-01 00:00:00 +0000"
    )
    assert _git(src, "%ai", shas["before epoch locally"]) is None


def test_parse_never_raises_and_is_bounded() -> None:
    for raw in (b"9" * 5000, b"1 +" + b"9" * 5000, b"\xff\xfe", b" \t 5 \t -0001 x", b"1 --1"):
        when, flag = gitdate.parse(raw)
        assert gitdate.EPOCH - timedelta(days=2) <= when <= gitdate.LATEST
        assert flag is None or len(flag) <= 64
    assert gitdate.parse(b"1600000000 +0530") == (
        datetime.fromisoformat("2020-09-13T17:56:40+05:30"),
        None,
    )


async def test_poll_and_process_every_date(
    dated: tuple[Path, dict[str, str]], tmp_path: Path, store: PgStore
) -> None:
    """The real poller and processor: the repository ends idle at git's HEAD, every commit
    reachable in git is stored, none is lost to its date."""
    src, _ = dated
    topic = "commits"
    bus = InMemoryBus(partitions=2)
    await bus.start()
    await bus.ensure_topics([topic, f"{topic}.dlq"])
    row = await store.add_repo(str(src), None)
    claimed = await store.claim_due_repo(60)
    assert claimed is not None
    await Poller(bus, store, PollerConfig(mirrors_dir=tmp_path / "m", topic=topic)).poll(claimed)
    polled = await store.get_repo(row.id)
    assert polled is not None
    assert (polled.state, polled.error) == ("idle", None)
    assert polled.head == run_git(src, "rev-parse", "HEAD").decode().strip()
    proc = Processor(bus, store, topic, "g", 100, f"{topic}.dlq", fetch_timeout=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(proc.run(stop))
    async with asyncio.timeout(30):
        while bus.committed("g", topic) != {k: v for k, v in bus.end_offsets(topic).items() if v}:
            await asyncio.sleep(0.02)
    stop.set()
    await task
    await bus.stop()
    git_shas = set(run_git(src, "rev-list", "HEAD").decode().split())
    assert await store.commit_shas(row.id) == git_shas
    # The flag is stored and served with the commit, exactly as the event carried it.
    flagged = 0
    with Repo(str(tmp_path / "m" / f"{row.id}.git")) as mirror:
        for sha in git_shas:
            e = commit_event(mirror, row.id, sha)
            got = await store.get_commit(row.id, sha)
            assert got is not None
            assert got["author"]["time_raw"] == e.author.time_raw, sha
            assert got["committer"]["time_raw"] == e.committer.time_raw, sha
            flagged += got["author"]["time_raw"] is not None
    assert flagged > 0
