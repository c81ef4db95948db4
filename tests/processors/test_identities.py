"""The identity book: merge, split, enrol, bots, matcher, SortingHat round trip; and regrouping
per-email counts through the book equals `git shortlog -sne` with the same mapping as a .mailmap."""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from metre.processors.identities import (
    Enrolment,
    IdentityBook,
    IdentityError,
    Individual,
    UnknownIndividual,
    export_sortinghat,
    github_login,
    implicit_id,
    import_sortinghat,
    is_bot,
    normalise_name,
    propose_merges,
)


def _book() -> IdentityBook:
    return IdentityBook.seed(
        [
            ("ann@work.example", "Ann Lee"),
            ("ann@home.example", "ann  lée"),
            ("12345+annlee@users.noreply.github.com", "annlee"),
            ("annlee@users.noreply.github.com", "A."),
            ("bob@work.example", "Bob"),
            ("49699333+dependabot[bot]@users.noreply.github.com", "dependabot[bot]"),
        ]
    )


def _id(book: IdentityBook, email: str) -> str:
    return book.mapping()[email]


@pytest.mark.parametrize(
    ("name", "email"),
    [
        ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com"),
        ("pre-commit-ci[bot]", "66853113+pre-commit-ci[bot]@users.noreply.github.com"),
        ("github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com"),
        ("renovate[bot]", "29139614+renovate[bot]@users.noreply.github.com"),
        ("Someone", "x[bot]@users.noreply.github.com"),
        ("Renovate Bot", "bot@renovateapp.com"),
    ],
)
def test_well_known_bots_are_flagged(name: str, email: str) -> None:
    assert is_bot(name, email)


@pytest.mark.parametrize(
    ("name", "email"), [("Ann Lee", "ann@work.example"), ("Abbot Costello", "abbot@x.example")]
)
def test_people_are_not_bots(name: str, email: str) -> None:
    assert not is_bot(name, email)


def test_noreply_login_and_name_normalisation() -> None:
    assert github_login("12345+AnnLee@users.noreply.github.com") == "annlee"
    assert github_login("annlee@users.noreply.github.com") == "annlee"
    assert github_login("annlee@example.com") is None
    assert normalise_name("  Ann   LÉE ") == normalise_name("ann lee") == "ann lee"


def test_matcher_proposes_name_and_noreply_groups_and_never_bots() -> None:
    book = _book()
    groups = propose_merges(book)
    m = book.mapping()
    assert groups == sorted(
        [
            frozenset({m["ann@work.example"], m["ann@home.example"]}),
            frozenset(
                {m["12345+annlee@users.noreply.github.com"], m["annlee@users.noreply.github.com"]}
            ),
        ],
        key=sorted,
    )
    assert book.bots() == {"49699333+dependabot[bot]@users.noreply.github.com"}


def test_merge_split_enrol() -> None:
    book = _book()
    ann = _id(book, "ann@work.example")
    book = book.merge(ann, [_id(book, "ann@home.example")])
    assert book.mapping()["ann@home.example"] == ann
    book, new = book.split(ann, ["ann@home.example"])
    assert book.mapping()["ann@home.example"] == new != ann
    book = book.enrol(ann, Enrolment("Acme", date(2020, 1, 1), date(2020, 12, 31)))
    book = book.enrol(ann, Enrolment("Initech", date(2021, 1, 1)))
    assert book.individuals[ann].organisation_on(date(2020, 6, 1)) == "Acme"
    assert book.individuals[ann].organisation_on(date(2022, 6, 1)) == "Initech"
    assert book.individuals[ann].organisation_on(date(2019, 6, 1)) is None


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (lambda b, a: b.merge(a, ["nope"]), "no individual with id 'nope'"),
        (lambda b, a: b.merge(a, [a]), "at least one other"),
        (lambda b, a: b.split(a, ["ann@work.example"]), "no email"),
        (lambda b, a: b.split(a, ["bob@work.example"]), "has no email bob@work.example"),
        (lambda b, a: b.enrol(a, Enrolment("Acme", date(2020, 6, 1))), "overlaps"),
        (
            lambda b, a: b.enrol(a, Enrolment("X", date(2023, 1, 2), date(2023, 1, 1))),
            "ends before it starts",
        ),
        (lambda b, a: b.unenrol(a, "Initech"), "no enrolment in 'Initech'"),
        (lambda b, a: b.unenrol(a, "Acme", date(2020, 1, 2)), "from 2020-01-02"),
        (lambda b, a: b.unenrol("nope", "Acme"), "no individual"),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(op, message: str) -> None:  # type: ignore[no-untyped-def]
    book = _book()
    ann = _id(book, "ann@work.example")
    book = book.enrol(ann, Enrolment("Acme", date(2020, 1, 1), date(2020, 12, 31)))
    before = export_sortinghat(book)
    with pytest.raises(IdentityError, match=message):
        op(book, ann)
    assert export_sortinghat(book) == before


def test_sortinghat_round_trip() -> None:
    book = _book()
    ann = _id(book, "ann@work.example")
    book = book.merge(ann, [_id(book, "ann@home.example")])
    book = book.enrol(ann, Enrolment("Acme", date(2020, 1, 1), date(2020, 12, 31)))
    doc = export_sortinghat(book)
    assert doc["organizations"] == {"Acme": []}
    assert import_sortinghat(doc) == book


def test_import_refuses_an_email_claimed_twice() -> None:
    doc = export_sortinghat(_book())
    uids = list(doc["uidentities"].values())
    uids[1]["identities"].append(dict(uids[0]["identities"][0], uuid=uids[1]["uuid"]))
    with pytest.raises(IdentityError, match="belongs to both"):
        import_sortinghat(doc)


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout


def test_regrouping_per_email_counts_equals_git_shortlog_with_the_mailmap(tmp_path: Path) -> None:
    """The read-time regrouping the people metrics rely on is exact: per-email commit counts
    summed per individual equal git's own counts under a .mailmap saying the same merges."""
    repo = tmp_path / "r"
    _git(tmp_path, "init", "-q", str(repo))
    authors = [
        ("Ann Lee", "ann@work.example"),
        ("ann lee", "ann@home.example"),
        ("annlee", "12345+annlee@users.noreply.github.com"),
        ("Bob", "bob@work.example"),
        ("Ann Lee", "ann@work.example"),
    ]
    for i, (name, email) in enumerate(authors):
        env = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": "c",
            "GIT_COMMITTER_EMAIL": "c@c",
            "HOME": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "GIT_AUTHOR_DATE": f"2024-01-0{i + 1}T00:00:00Z",
            "GIT_COMMITTER_DATE": f"2024-01-0{i + 1}T00:00:00Z",
        }
        _git(repo, "commit", "-q", "--allow-empty", "-m", f"c{i}", env=env)
    per_email = Counter(
        line.lower() for line in _git(repo, "log", "--format=%ae", "--no-mailmap").split()
    )
    book = IdentityBook.seed([(e, n) for n, e in authors])
    for group in propose_merges(book):
        first, *rest = sorted(group)
        book = book.merge(first, rest)
    mapping = book.mapping()
    ours = Counter[str]()
    for email, n in per_email.items():
        ours[mapping[email]] += n
    # The same mapping as a .mailmap: every email of an individual onto its least email.
    canon = {pid: min(p.emails) for pid, p in book.individuals.items()}
    (repo / ".mailmap").write_text(
        "".join(f"<{canon[pid]}> <{e}>\n" for e, pid in mapping.items() if e != canon[pid])
    )
    theirs = Counter[str]()
    for line in _git(repo, "shortlog", "-se", "HEAD").splitlines():
        count, who = line.strip().split("\t")
        theirs[who.rsplit("<", 1)[1].rstrip(">").lower()] += int(count)
    assert {canon[pid]: n for pid, n in ours.items()} == dict(theirs)
    # Ann's two emails are one person (same normalised name); a one-word login alone is not
    assert len(theirs) == 3


def test_unknown_individuals_are_their_own_error_and_unenrol_removes_ranges() -> None:
    book = _book()
    ann = _id(book, "ann@work.example")
    with pytest.raises(UnknownIndividual):
        book.set_bot("nope", True)
    book = book.enrol(ann, Enrolment("Acme", date(2020, 1, 1), date(2020, 12, 31)))
    book = book.enrol(ann, Enrolment("Acme", date(2022, 1, 1)))
    assert len(book.unenrol(ann, "Acme", date(2022, 1, 1)).individuals[ann].enrolments) == 1
    assert book.unenrol(ann, "Acme").individuals[ann].enrolments == ()


def test_implicit_ids_are_stable_and_case_blind() -> None:
    assert implicit_id("Ann@Work.example") == implicit_id("ann@work.example")
    assert implicit_id("ann@work.example") != implicit_id("ann@home.example")
    assert len(implicit_id("x@y")) == 32


def test_overlay_takes_emails_from_their_holders_and_keeps_the_rest() -> None:
    book = _book()
    ann, bob = _id(book, "ann@work.example"), _id(book, "bob@work.example")
    imported = IdentityBook(
        {"new": Individual("new", frozenset({"ann@work.example", "x@y"}), frozenset({"A"}))}
    )
    out = book.overlay(imported)
    assert out.mapping()["ann@work.example"] == "new"
    assert ann not in out.individuals  # its only email went
    assert out.individuals[bob] == book.individuals[bob]
    assert set(out.mapping()) == set(book.mapping()) | {"x@y"}
    same_id = IdentityBook({bob: Individual(bob, frozenset({"b@b"}))})
    assert out.overlay(same_id).individuals[bob].emails == {"b@b"}
    # Bob's own email, not named by the import, is an individual on its own again.
    assert out.overlay(same_id).mapping()["bob@work.example"] == implicit_id("bob@work.example")
