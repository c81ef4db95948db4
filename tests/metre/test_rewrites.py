"""History rewrites and .mailmap end to end: real git repositories rewritten with the git CLI,
the real poller, bus, processor and PostgreSQL. After every rewrite every table (facts and every
metric table) equals a fresh ingest of the new history into another database, and the API
equals git."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from metre.processors.store import PgStore
from testkit.dump import differences, dump
from testkit.oracle import assert_api_matches_git
from testkit.pipeline import pipeline
from testkit.postgres import drop_database
from tests.fixtures.gitrepo import GitRepoBuilder, run_git
from tests.fixtures.postgres import MakeDatabase

pytestmark = [pytest.mark.integration]

PEOPLE = [
    ("Ann", "ann@example.org"),
    ("Bob Jones", "BOB@example.org"),
    ("bob jones", "bob@example.org"),
    ("Cy", "cy@example.org"),
    ("Zoë", "zoe@example.org"),
]


async def fresh_dump(
    make_database: MakeDatabase, root: Path, source: Path, branch: str | None
) -> dict[str, list[dict[str, object]]]:
    """Every table after ingesting `source` from scratch into a new database."""
    dsn = await make_database()
    store = await PgStore.connect(dsn, min_size=1, max_size=4)
    try:
        row = await store.add_repo(str(source), branch)
        async with pipeline(store, root, partitions=4, chunk=7, batch=10) as p:
            await p.sync(row.id)
        return await dump(dsn)
    finally:
        await store.close()
        await drop_database(dsn)


def commit_files(b: GitRepoBuilder, n: int, *, tag: str = "") -> str:
    """A commit touching only its own file (rebases never conflict), varied authors and dates;
    commits 3k and 3k+1 share an instant (ties in the latest name)."""
    name, email = PEOPLE[n % len(PEOPLE)]
    b.write(f"own/f{tag}{n}.txt", b"".join(b"line %d\n" % i for i in range(n % 7 + 1)))
    day = 10 + n // 3
    return b.commit(
        f"own commit {tag}{n}",
        author=(name, email),
        date=f"2030-01-{day:02d}T{(n % 2) * 5 + 3:02d}:00:00+0{n % 3}00",
    )


@pytest.mark.slow
async def test_force_pushes_and_branch_switch_equal_a_fresh_ingest(
    store: PgStore,
    make_database: MakeDatabase,
    tmp_path: Path,
    history_factory: Callable[..., Path],
) -> None:
    base = history_factory(80, 3)
    src = tmp_path / "src"
    run_git(tmp_path, "clone", "-q", str(base), str(src))
    b = GitRepoBuilder(src)  # re-initialising a clone keeps it as it is
    later = {b"GIT_COMMITTER_DATE": b"2030-03-01T00:00:00+0000"}  # rewrites happen later
    for n in range(12):
        commit_files(b, n)
    row = await store.add_repo(str(src), None)
    branch: str | None = None
    step = 0

    async def check() -> None:
        nonlocal step
        step += 1
        await p.sync(row.id)
        want = await fresh_dump(make_database, tmp_path / f"fresh{step}", src, branch)
        got = await dump(store._dsn)
        assert differences(got, want) == {}, step
        assert got == want
        await assert_api_matches_git(p.client, row.id, src)

    async with pipeline(store, tmp_path / "live", partitions=4, chunk=7, batch=10) as p:
        await check()  # the first ingest
        published = p.poller.published

        b.write("own/f11.txt", b"amended\n")  # amend the head: one out, one in
        b.git("add", "-A")
        amend = ("commit", "-q", "--amend", "-m", "amended", "--author", "Amy <amy@example.org>")
        b.git(*amend, extra_env=later)
        await check()
        assert p.poller.published - published == 2
        published = p.poller.published

        b.git("rebase", "-q", "--onto", "HEAD~6", "HEAD~4", extra_env=later)  # drop 2, rewrite 4
        await check()
        assert p.poller.published - published == 6 + 4  # 6 retracted, 4 republished
        published = p.poller.published

        b.git("reset", "-q", "--hard", "HEAD~25")  # back into the generated history (merges)
        await check()
        assert p.poller.published - published >= 25

        for n in range(3):  # ordinary new commits still only publish what is new
            commit_files(b, n, tag="x")
        published = p.poller.published
        await check()
        assert p.poller.published - published == 3

        b.git("checkout", "-q", "-b", "other", "main~30")  # switch to another branch
        for n in range(4):
            commit_files(b, n, tag="o")
        branch = "other"
        r = await p.client.patch(f"/api/v1/repos/{row.id}", json={"branch": "other"})
        assert r.status_code == 200, r.text
        assert r.json()["branch"] == "other"
        await check()


async def test_patch_branch_validation(store: PgStore, tmp_path: Path) -> None:
    row = await store.add_repo("https://example.org/x.git", None)
    async with pipeline(store, tmp_path, partitions=4, chunk=7, batch=10) as p:
        for body in ({"branch": "../x"}, {"branch": ""}, {}, {"branch": 3}, {"url": "y"}):
            r = await p.client.patch(f"/api/v1/repos/{row.id}", json=body)
            assert r.status_code == 422, (body, r.text)
        r = await p.client.patch("/api/v1/repos/999", json={"branch": "main"})
        assert r.status_code == 404
        r = await p.client.patch(f"/api/v1/repos/{row.id}", json={"branch": "dev"})
        assert (r.status_code, r.json()["branch"]) == (200, "dev")
        got = await store.get_repo(row.id)
        assert got is not None
        assert got.branch == "dev"
        r = await p.client.patch(f"/api/v1/repos/{row.id}", json={"branch": None})
        assert (r.status_code, r.json()["branch"]) == (200, None)


def git_mapped(repo: Path) -> dict[str, tuple[str, str, str, str]]:
    """sha -> (author name, email, committer name, email) per `git log --use-mailmap`."""
    out = run_git(repo, "log", "-z", "--use-mailmap", "--format=%H%x01%aN%x01%aE%x01%cN%x01%cE")
    result = {}
    for rec in out.decode().split("\0"):
        if rec.strip():
            sha, an, ae, cn, ce = rec.strip("\n").split("\x01")
            result[sha] = (an, ae, cn, ce)
    return result


async def test_mailmap_added_changed_and_removed_reattributes_history(
    store: PgStore, make_database: MakeDatabase, tmp_path: Path
) -> None:
    b = GitRepoBuilder(tmp_path / "src")
    who = [
        ("Ann", "ann@x.org"),
        ("ann", "ANN@x.org"),
        ("A. Nonymous", "old-ann@x.org"),
        ("Bob", "bob@x.org"),
        ("Robert", "Bob@X.org"),
        ("Cy", "cy@x.org"),
    ]

    def commits(tag: str, k: int) -> None:
        for n in range(k):
            b.write(f"{tag}{n}.txt", b"x\n" * (n + 1))
            b.commit(
                f"{tag} {n}",
                author=who[n % len(who)],
                committer=who[(n + 1) % len(who)],
                date=f"2031-02-{n + 1:02d}T10:00:00+0100",
            )

    commits("a", 7)
    row = await store.add_repo(str(b.path), None)
    step = 0

    async def check(p: object) -> None:
        nonlocal step
        step += 1
        assert isinstance(pipe, type(p))
        await pipe.sync(row.id)
        want = await fresh_dump(make_database, tmp_path / f"fresh{step}", b.path, None)
        got = await dump(store._dsn)
        assert differences(got, want) == {}, step
        mapped = git_mapped(b.path)
        for sha, (an, ae, cn, ce) in mapped.items():
            body = (await pipe.client.get(f"/api/v1/repos/{row.id}/commits/{sha}")).json()
            assert (body["author"]["name"], body["author"]["email"]) == (an, ae.lower()), step
            assert (body["committer"]["name"], body["committer"]["email"]) == (cn, ce.lower())
        r = await pipe.client.get(f"/api/v1/repos/{row.id}/metrics/authors")
        authors = {a["email"]: a["commits"] for a in r.json()["authors"]}
        expected: dict[str, int] = {}
        for _, ae, _, _ in mapped.values():
            expected[ae.lower()] = expected.get(ae.lower(), 0) + 1
        assert authors == expected, step

    async with pipeline(store, tmp_path / "live", partitions=4, chunk=7, batch=10) as pipe:
        await check(pipe)  # no .mailmap
        b.write(
            ".mailmap",
            b"Ann Canon <ann@x.org>\n"
            b"<ann@x.org> <OLD-ANN@x.org>\n"
            b"Robert Smith <robert@x.org> robert <BOB@x.org>\n"
            b"# Cy stays Cy <cy@x.org>\n",
        )
        b.commit("add a mailmap", date="2031-03-01T00:00:00+0000")
        commits("b", 3)
        await check(pipe)
        emails = {a[1].lower() for a in git_mapped(b.path).values()}
        assert "old-ann@x.org" not in emails  # the mapping changed identities
        assert "robert@x.org" in emails
        b.write(".mailmap", b"Bob Canon <bob@x.org>\nCy Canon <canon@x.org> <cy@x.org>\n")
        b.commit("change the mailmap", date="2031-03-02T00:00:00+0000")
        await check(pipe)
        b.remove(".mailmap")
        b.commit("remove the mailmap", date="2031-03-03T00:00:00+0000")
        await check(pipe)
        r = await store.get_repo(row.id)
        assert r is not None
        assert r.mailmap_sha is None
