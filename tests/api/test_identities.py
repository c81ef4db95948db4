"""Identities over the real pipeline: the /api/v1/identities routes (bad input refused with
nothing changed), and people metrics regrouped by individual exactly as a fresh ingest of the
same history under a .mailmap saying the same thing (git's own `shortlog -se` and the
git-CLI oracles of testkit/oracle.py and tests/api/files_oracle.py on that copy)."""

from __future__ import annotations

import random
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from testkit.gitbuilder import GitRepoBuilder
from testkit.oracle import expected_authors, expected_contributors
from testkit.pipeline import Pipeline
from tests.api.files_oracle import expected_ownership

pytestmark = pytest.mark.integration

ANN = [
    ("Ann Lee", "ann@work.example"),
    ("ann lee", "ann@home.example"),
    ("annlee", "12345+annlee@users.noreply.github.com"),
]
BOB = [("Bob Stone", "bob@work.example"), ("Bob Stone", "BOB@old.example")]
CY = ("Cy", "cy@example.org")
BOT = ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com")
ZED = ("Zed", "zed@example.org")
MAILMAP_LINES = 6
IDS = "/api/v1/identities"


def build(path: Path, mailmap: list[str], rewrite: dict[str, str] | None = None) -> Path:
    """The same history every time (seeded), ending with a commit by Zed adding a .mailmap of
    MAILMAP_LINES lines: `mailmap`'s, padded with comments, so every copy counts the same
    lines whatever its mapping says. `rewrite`: author emails replaced while committing (the
    mapping resolved by construction, for the git-CLI oracles that read raw emails)."""
    rnd = random.Random(14)
    g = GitRepoBuilder(path)
    people = [*ANN, *BOB, CY, BOT]
    files = [f"src/m{i}.py" for i in range(8)]
    for i in range(40):
        who = people[rnd.randrange(len(people))] if i else ANN[0]
        for f in rnd.sample(files, rnd.randint(1, 3)):
            p = path / f
            old = p.read_bytes() if p.exists() else b""
            g.write(f, old + b"".join(b"line %d %d\n" % (i, k) for k in range(rnd.randint(1, 4))))
        day = 1 + i * 3
        if rewrite:
            who = (who[0], rewrite.get(who[1].lower(), who[1]))
        g.commit(f"c{i}", author=who, date=f"2024-{1 + day // 28:02}-{1 + day % 28:02}T10:00:00Z")
    lines = mailmap + ["# -"] * (MAILMAP_LINES - len(mailmap))
    g.write(".mailmap", "".join(f"{x}\n" for x in lines).encode())
    g.commit("mailmap", author=ZED, date="2024-06-01T10:00:00Z")
    return path


def canon_of(groups: list[list[str]]) -> dict[str, str]:
    """Every email of a group onto its least (lower-cased, code point order), as metre names an
    individual."""
    return {e.lower(): min(x.lower() for x in g) for g in groups for e in g}


def mailmap_of(groups: list[list[str]]) -> list[str]:
    return [f"<{c}> <{e}>" for e, c in canon_of(groups).items() if e != c]


async def get(api: Pipeline, path: str, **params: Any) -> dict[str, Any]:
    r = await api.client.get(path, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def who(api: Pipeline, email: str) -> str:
    body = await get(api, IDS, email=email)
    assert body["total"] == 1, body
    pid: str = body["individuals"][0]["id"]
    return pid


def strip(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("provenance", "repo_id")}


async def people_metrics(api: Pipeline, rid: int) -> dict[str, Any]:
    base = f"/api/v1/repos/{rid}/metrics"
    out = {"authors": strip(await get(api, f"{base}/authors"))}
    for g in ("day", "week", "month"):
        for gap in (0, 7):
            out[f"contributors-{g}-{gap}"] = strip(
                await get(api, f"{base}/contributors", granularity=g, gap_days=gap)
            )
    out["ownership"] = strip(await get(api, f"{base}/ownership", limit=1000))
    out["truck-factor"] = strip(await get(api, f"{base}/truck-factor"))
    return out


def shortlog(repo: Path) -> dict[str, int]:
    """Commits per email as git counts them under the repository's .mailmap."""
    out = subprocess.run(
        ["git", "-C", str(repo), "shortlog", "-se", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts = Counter[str]()
    for line in out.splitlines():
        n, rest = line.strip().split("\t")
        counts[rest.rsplit("<", 1)[1].rstrip(">").lower()] += int(n)
    return dict(counts)


def shas_not_by(repo: Path, email: str) -> set[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%aE %H"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {sha for line in out.splitlines() for e, sha in [line.split()] if e.lower() != email}


async def assert_served_as_git(api: Pipeline, rid: int, mapped: Path, repo: Path) -> None:
    """People metrics of `rid` (ingested without a mapping, regrouped by identities) against
    git: `shortlog -se` on `mapped` (the history under a .mailmap) and the oracles on `repo`
    (the history written with the mapped emails)."""
    authors = (await get(api, f"/api/v1/repos/{rid}/metrics/authors"))["authors"]
    assert {a["email"]: a["commits"] for a in authors} == shortlog(mapped)
    want = expected_authors(repo)
    assert {a["email"] for a in authors} == set(want)
    for a in authors:
        w = want[a["email"]]
        assert (a["commits"], a["added"], a["removed"]) == (w["commits"], w["added"], w["removed"])
        assert a["first_commit_at"] == w["first"].isoformat()
        assert (a["last_commit_at"], a["name"]) == (w["last"][0].isoformat(), w["last"][1])
    for g in ("day", "week", "month"):
        for gap in (0, 7):
            body = await get(
                api, f"/api/v1/repos/{rid}/metrics/contributors", granularity=g, gap_days=gap
            )
            assert body["series"] == expected_contributors([repo], g, gap), (g, gap)
    owners, removed = expected_ownership(repo)
    own = await get(api, f"/api/v1/repos/{rid}/metrics/ownership", limit=1000)
    got = {f["path"]: f["authors"] for f in own["files"]}
    assert list(got) == sorted(owners)
    for p, w2 in owners.items():
        assert [a["email"] for a in got[p]] == [e for e, _ in w2], p
        for a, (_, d) in zip(got[p], w2, strict=True):
            assert a["doa"] == pytest.approx(d, abs=1e-9), p
    tf = await get(api, f"/api/v1/repos/{rid}/metrics/truck-factor")
    assert [r["email"] for r in tf["removed"]] == removed


async def test_merge_and_split_equal_a_fresh_ingest_under_the_mailmap(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    api = metre_api
    plain = build(tmp_path / "plain", [])
    merged = [[e for _, e in ANN], [e for _, e in BOB]]
    merged_repo = build(tmp_path / "merged", mailmap_of(merged))
    merged_oracle = build(tmp_path / "merged-oracle", [], canon_of(merged))
    split = [[ANN[0][1], ANN[2][1]], [e for _, e in BOB]]
    split_repo = build(tmp_path / "split", mailmap_of(split))
    split_oracle = build(tmp_path / "split-oracle", [], canon_of(split))
    rid = await api.ingest(plain)
    before = await people_metrics(api, rid)
    assert len(before["authors"]["authors"]) == 8  # every email its own individual
    rid_merged = await api.ingest(merged_repo)
    rid_split = await api.ingest(split_repo)

    # The matcher proposes Ann's two emails (same name) and Bob's; nothing is applied yet.
    props = await get(api, f"{IDS}/proposals")
    groups = [sorted(x["email"] for x in g["individuals"]) for g in props["groups"]]
    assert sorted(groups) == [
        ["ann@home.example", "ann@work.example"],
        ["bob@old.example", "bob@work.example"],
    ]
    assert await people_metrics(api, rid) == before
    ids = [[x["id"] for x in g["individuals"]] for g in props["groups"]]
    r = await api.client.post(
        f"{IDS}/proposals", json={"groups": ids, "generation": props["generation"]}
    )
    assert r.status_code == 200, r.text
    # The noreply login is not matched to a name; merged by hand.
    ann = await who(api, "ann@work.example")
    r = await api.client.post(
        f"{IDS}/merge", json={"into": ann, "individuals": [await who(api, ANN[2][1])]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["individual"]["emails"] == sorted(e.lower() for _, e in ANN)

    # Served at once, no re-ingest: equal to the copy ingested under the .mailmap, and to git.
    now = await people_metrics(api, rid)
    assert now == await people_metrics(api, rid_merged)
    assert len(now["authors"]["authors"]) == 5
    await assert_served_as_git(api, rid, merged_repo, merged_oracle)

    # Split Ann's home address out again: equal to the copy whose .mailmap lacks that line.
    r = await api.client.post(f"{IDS}/{ann}/split", json={"emails": ["Ann@Home.example"]})
    assert r.status_code == 200, r.text
    assert r.json()["new"]["emails"] == ["ann@home.example"]
    assert await people_metrics(api, rid) == await people_metrics(api, rid_split)
    await assert_served_as_git(api, rid, split_repo, split_oracle)


async def test_bots_exclude_and_the_cache_follows_identity_changes(
    metre_api: Pipeline, tmp_path: Path
) -> None:
    api = metre_api
    repo = build(tmp_path / "r", [])
    rid = await api.ingest(repo)
    base = f"/api/v1/repos/{rid}/metrics"
    everyone = (await get(api, f"{base}/authors"))["authors"]
    bot_email = BOT[1].lower()
    assert bot_email in {a["email"] for a in everyone}
    humans = await get(api, f"{base}/authors", bots="exclude")
    assert [a for a in everyone if a["email"] != bot_email] == humans["authors"]
    assert humans["provenance"]["params"]["bots"] == "exclude"
    bot_id = await who(api, bot_email)
    assert (await get(api, f"{IDS}/{bot_id}"))["bot"] is True

    # Contributors without the bot: git's days of every other author.
    shas = shas_not_by(repo, bot_email)
    for g in ("day", "month"):
        body = await get(api, f"{base}/contributors", granularity=g, bots="exclude")
        assert body["series"] == expected_contributors([repo], g, 90, shas)
    tf = await get(api, f"{base}/truck-factor", bots="exclude")
    assert bot_email not in {r["email"] for r in tf["removed"]}
    org = await get(api, "/api/v1/metrics/contributors", bots="exclude", granularity="month")
    assert org["series"] == expected_contributors([repo], "month", 90, shas)

    # A person flagged by hand is left out too; its ETag moves, the cached answer is not served.
    first = await api.client.get(f"{base}/authors", params={"bots": "exclude"})
    tag, generation = first.headers["etag"], first.json()["provenance"]["identities"]
    cy = await who(api, CY[1])
    r = await api.client.put(f"{IDS}/{cy}/bot", json={"bot": True})
    assert r.status_code == 200, r.text
    assert r.json()["generation"] == generation + 1
    again = await api.client.get(
        f"{base}/authors", params={"bots": "exclude"}, headers={"If-None-Match": tag}
    )
    assert again.status_code == 200
    assert CY[1] not in {a["email"] for a in again.json()["authors"]}
    assert again.json()["provenance"]["identities"] == generation + 1
    r = await api.client.put(f"{IDS}/{cy}/bot", json={"bot": False})
    assert r.status_code == 200
    assert (await get(api, f"{base}/authors", bots="exclude"))["authors"] == humans["authors"]
    r = await api.client.get(f"{base}/authors", params={"bots": "maybe"})
    assert r.status_code == 422


async def test_routes_and_bad_input_change_nothing(metre_api: Pipeline, tmp_path: Path) -> None:
    api, c = metre_api, metre_api.client
    rid = await api.ingest(build(tmp_path / "r", []))
    listed = await get(api, IDS)
    assert listed["total"] == 8
    assert [p["email"] for p in listed["individuals"]] == sorted(
        e.lower() for _, e in [*ANN, *BOB, CY, BOT, ZED]
    )
    assert (await get(api, IDS, limit=2, offset=1))["individuals"] == listed["individuals"][1:3]
    assert (await get(api, IDS, bot="true"))["total"] == 1
    ann, home, bob = await who(api, ANN[0][1]), await who(api, ANN[1][1]), await who(api, BOB[0][1])
    authors = await get(api, f"/api/v1/repos/{rid}/metrics/authors")

    async def unchanged() -> None:
        now = await get(api, IDS)
        assert now == listed
        assert await get(api, f"/api/v1/repos/{rid}/metrics/authors") == authors

    bad: list[tuple[str, str, Any, int]] = [
        ("post", f"{IDS}/merge", {"into": ann, "individuals": ["nobody"]}, 404),
        ("post", f"{IDS}/merge", {"into": "nobody", "individuals": [ann]}, 404),
        ("post", f"{IDS}/merge", {"into": ann, "individuals": [ann]}, 422),
        ("post", f"{IDS}/merge", {"into": ann, "individuals": []}, 422),
        ("post", f"{IDS}/merge", {"into": ann, "individuals": [home], "x": 1}, 422),
        ("post", f"{IDS}/merge", {"into": "bad id!", "individuals": [home]}, 422),
        ("post", f"{IDS}/{ann}/split", {"emails": [ANN[0][1]]}, 422),  # its only email
        ("post", f"{IDS}/{ann}/split", {"emails": ["bob@work.example"]}, 422),
        ("post", f"{IDS}/nobody/split", {"emails": ["a@b"]}, 404),
        (
            "post",
            f"{IDS}/{ann}/enrolments",
            {"organisation": "Acme", "start": "2024-02-01", "end": "2024-01-01"},
            422,
        ),
        ("post", f"{IDS}/{ann}/enrolments", {"organisation": "", "start": "2024-02-01"}, 422),
        ("post", f"{IDS}/{ann}/enrolments", {"organisation": "A\x00"}, 422),
        ("post", f"{IDS}/{ann}/unenrol", {"organisation": "Acme"}, 422),
        ("put", f"{IDS}/{ann}/bot", {"bot": "perhaps"}, 422),
        ("put", f"{IDS}/nobody/bot", {"bot": True}, 404),
        ("post", f"{IDS}/proposals", {"groups": [[ann]]}, 422),
        ("post", f"{IDS}/proposals", {"groups": [[ann, home], [home, bob]]}, 422),
        ("post", f"{IDS}/proposals", {"groups": [[ann, home]], "generation": 99}, 409),
        ("post", f"{IDS}/proposals", {"groups": [[ann, home], [bob, "nobody"]]}, 404),
        ("post", f"{IDS}/import", {"no": "uidentities"}, 422),
        ("post", f"{IDS}/import", [1, 2], 422),
        (
            "post",
            f"{IDS}/import",
            {
                "uidentities": {
                    "x": {
                        "uuid": "x",
                        "identities": [{"email": "ann@work.example"}],
                        "enrollments": [
                            {"organization": "A", "start": "2020-01-01", "end": "2019-01-01"}
                        ],
                    }
                }
            },
            422,
        ),
        (
            "post",
            f"{IDS}/import",
            {"uidentities": {"a b": {"identities": [{"email": "ann@work.example"}]}}},
            422,
        ),
        (
            "post",
            f"{IDS}/import",
            {
                "uidentities": {
                    "x": {"identities": [{"email": "q@q"}]},
                    "y": {"identities": [{"email": "Q@q"}]},
                }
            },
            422,
        ),
    ]
    for method, path, body, status in bad:
        r = await c.request(method.upper(), path, json=body)
        assert r.status_code == status, (path, body, r.text)
        assert r.json()["error"]["message"], r.text
        await unchanged()
    r = await c.get(f"{IDS}/nobody")
    assert r.status_code == 404
    r = await c.get(IDS, params={"colour": "red"})
    assert r.status_code == 422
    r = await c.post(f"{IDS}/import/csv", content=b"individual,email\n", headers={
        "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 415
    for text in (b"who,what\nx,y\n", b"individual,email,bot\nx,a@b,perhaps\n", b"\xff"):
        r = await c.post(f"{IDS}/import/csv", content=text, headers={"content-type": "text/csv"})
        assert r.status_code == 422, (text, r.text)
    await unchanged()

    # Enrolments: open and dated ranges, overlaps refused, removal.
    r = await c.post(f"{IDS}/{ann}/enrolments", json={"organisation": "Acme", "end": "2023-12-31"})
    assert r.status_code == 201, r.text
    r = await c.post(
        f"{IDS}/{ann}/enrolments", json={"organisation": "Beta", "start": "2023-06-01"}
    )
    assert r.status_code == 422
    assert "overlaps" in r.json()["error"]["message"]
    r = await c.post(
        f"{IDS}/{ann}/enrolments", json={"organisation": "Beta", "start": "2024-01-01"}
    )
    assert r.status_code == 201
    assert r.json()["individual"]["enrolments"] == [
        {"organisation": "Acme", "start": None, "end": "2023-12-31"},
        {"organisation": "Beta", "start": "2024-01-01", "end": None},
    ]
    assert (await get(api, IDS, organisation="Beta"))["total"] == 1
    r = await c.post(f"{IDS}/{ann}/unenrol", json={"organisation": "Acme"})
    assert r.status_code == 200
    assert [e["organisation"] for e in r.json()["individual"]["enrolments"]] == ["Beta"]

    # Export, change, import the export back: the book as it was exported.
    exported = (await c.get(f"{IDS}/export")).json()
    assert set(exported) == {"blacklist", "organizations", "uidentities"}
    assert exported["organizations"] == {"Beta": []}
    r = await c.post(f"{IDS}/merge", json={"into": ann, "individuals": [home]})
    assert r.status_code == 200
    assert len((await get(api, IDS))["individuals"]) == 7
    r = await c.post(f"{IDS}/import", json=exported)
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == 8
    book = await get(api, IDS)
    assert book["total"] == 8
    assert (await c.get(f"{IDS}/export")).json() == exported

    # CSV: one row per email; importing it back changes nothing but the generation.
    csv_text = (await c.get(f"{IDS}/export", params={"format": "csv"})).text
    assert csv_text.splitlines()[0] == "individual,email,bot,names,enrolments"
    assert len(csv_text.splitlines()) == 9
    r = await c.post(f"{IDS}/import/csv", content=csv_text, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    after = await get(api, IDS)
    assert after["individuals"] == book["individuals"]
    # A CSV merging two emails: one individual.
    merge_csv = f"individual,email\n{ann},{ANN[0][1]}\n{ann},{ANN[1][1]}\n"
    r = await c.post(f"{IDS}/import/csv", content=merge_csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert (await get(api, f"{IDS}/{ann}"))["emails"] == sorted([ANN[0][1], ANN[1][1]])
    assert (await get(api, IDS))["total"] == 7


async def test_writes_need_a_token_when_tokens_are_set(tmp_path: Path, store: Any) -> None:
    import httpx
    from pydantic import SecretStr

    from metre.api.app import create_app
    from metre.settings import Settings

    app = create_app(Settings(data_dir=tmp_path, api_tokens=SecretStr("secret-token")), store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://metre") as c:
        r = await c.post(f"{IDS}/merge", json={"into": "a", "individuals": ["b"]})
        assert r.status_code == 401
        r = await c.post(
            f"{IDS}/merge",
            json={"into": "a", "individuals": ["b"]},
            headers={"Authorization": "Bearer secret-token"},
        )
        assert r.status_code == 404
