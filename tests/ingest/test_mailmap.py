"""metre.ingest.mailmap against `git check-mailmap` (the oracle), on written and random files."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from dulwich.mailmap import Mailmap as DulwichMailmap
from dulwich.mailmap import read_mailmap as read_dulwich_mailmap
from dulwich.repo import Repo

from metre.ingest.mailmap import Mailmap, read_mailmap
from tests.fixtures.gitrepo import GitRepoBuilder

AWKWARD = """\
# a comment line <commented@x>
Proper Name <p@x>
<new@x> <OLD@x>
Both Name <both@x> <both-old@x>
Specific Name <spec@x> Old Name <shared@x>
Shared Default <shared@x>
  Spaced   Out  <spaced@x>
Later Wins <p@x>
Only Email Later <OLD@x>
Name Only <nameonly@x> Some Body <NameOnlyOld@X>
<mixed@x> Caps NAME <Mixed-Old@x>
Trailing <t@x> # comment without brackets
Trailing Two <t2@x> # was <t2-old@x>
broken line without brackets
Empty <> <empty-old@x>
Weird <w@x> <>
\tTab Name\t<tab@x>
Ünï Cödé <uni@x> ÜNÏ cödé <uni-old@x>
Crlf Name <crlf@x>\r
""".encode()

QUERIES = [
    ("anyone", "p@x"),
    ("anyone", "P@X"),
    ("x", "old@x"),
    ("x", "OLD@X"),
    ("x", "both-old@x"),
    ("Old Name", "shared@x"),
    ("old name", "SHARED@x"),
    ("Other Name", "shared@x"),
    ("x", "spaced@x"),
    ("Some Body", "nameonlyold@x"),
    ("Someone Else", "nameonlyold@x"),
    ("caps name", "mixed-old@x"),
    ("Caps NAME", "Mixed-Old@X"),
    ("Nobody", "mixed-old@x"),
    ("x", "t@x"),
    ("x", "t2-old@x"),
    ("Trailing Two", "t2-old@x"),
    ("x", "empty-old@x"),
    ("x", ""),
    ("x", "w@x"),
    ("x", "tab@x"),
    ("ÜNÏ cödé", "uni-old@x"),
    ("ünï cödé", "uni-old@x"),  # non-ASCII letters do not fold, as in git
    ("x", "crlf@x"),
    ("x", "commented@x"),
    ("Unmapped", "nobody@x"),
]


def git_check(tmp: Path, data: bytes, queries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """`git check-mailmap` of each "name <email>" with `data` as the repository's .mailmap."""
    b = GitRepoBuilder(tmp)
    b.write(".mailmap", data)
    out = b.git("check-mailmap", *[f"{n} <{e}>" for n, e in queries]).decode()
    result = []
    for line in out.splitlines():
        name, _, email = line.rpartition(" <")
        result.append((name, email.removesuffix(">")))
    assert len(result) == len(queries)
    return result


def test_awkward_mailmap_matches_git(tmp_path: Path) -> None:
    want = git_check(tmp_path / "repo", AWKWARD, QUERIES)
    mm = Mailmap(AWKWARD)
    got = [mm.map(n, e) for n, e in QUERIES]
    assert got == want
    # The file exercises every form: some queries map, some do not.
    assert sum(g != q for g, q in zip(got, QUERIES, strict=True)) >= 15


def test_dulwich_mailmap_is_not_exact(tmp_path: Path) -> None:
    """Why metre has its own: dulwich's reader maps by name alone and matches emails by case."""
    data = b"Proper Name <p@x>\n<new@x> <OLD@x>\n"
    queries = [("Proper Name", "other@x"), ("x", "old@x")]
    want = git_check(tmp_path / "repo", data, queries)
    assert want == [("Proper Name", "other@x"), ("x", "new@x")]
    dm = DulwichMailmap(read_dulwich_mailmap(io.BytesIO(data)))
    got = [dm.lookup((n.encode(), e.encode())) for n, e in queries]
    assert got == [(b"Proper Name", b"p@x"), (b"x", b"old@x")]  # both differ from git
    assert [Mailmap(data).map(n, e) for n, e in queries] == want


_NAMES = ["Ann", "ann", "ANN", "Bob Jones", "bob jones", "Cy", "Dee Dee"]
_EMAILS = ["a@x", "A@X", "b@x", "B@x", "c@x", "d@X", "e@x"]


def _random_line(rng: random.Random) -> str:
    def ident(name: bool) -> str:
        who = rng.choice(_NAMES) + " " if name else ""
        return f"{who}<{rng.choice(_EMAILS)}>"

    form = rng.randrange(5)
    if form == 0:
        return ident(True)
    if form == 1:
        return f"{ident(False)} {ident(False)}"
    if form == 2:
        return f"{ident(True)} {ident(False)}"
    if form == 3:
        return f"{ident(True)} {ident(True)}"
    return f"{ident(False)} {ident(True)}"


@pytest.mark.parametrize("seed", range(6))
def test_random_mailmaps_match_git(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = "\n".join(_random_line(rng) for _ in range(rng.randrange(3, 14))).encode()
    queries = [(n, e) for n in _NAMES for e in _EMAILS]
    want = git_check(tmp_path / "repo", data, queries)
    mm = Mailmap(data)
    assert [mm.map(n, e) for n, e in queries] == want


def test_read_mailmap_from_the_head_tree(tmp_path: Path) -> None:
    b = GitRepoBuilder(tmp_path / "repo")
    b.write("a", b"1\n")
    first = b.commit("no mailmap")
    b.write(".mailmap", b"Canon <c@x> <old@x>\n")
    second = b.commit("mailmap")
    b.remove(".mailmap")
    b.write(".mailmap/inside", b"a directory named .mailmap\n")
    third = b.commit("a directory")
    with Repo(str(b.path)) as repo:
        assert read_mailmap(repo, first)[0] is None
        sha, mm = read_mailmap(repo, second)
        assert sha == b.git("rev-parse", f"{second}:.mailmap").decode().strip()
        assert mm.map("x", "OLD@x") == ("Canon", "c@x")
        sha3, mm3 = read_mailmap(repo, third)
        assert sha3 is None
        assert not mm3


def test_read_mailmap_at_a_loose_head_whose_date_dulwich_refuses(tmp_path: Path) -> None:
    """The head commit is read raw, never parsed: dulwich's parser refuses a date git accepts
    ("12x34"), and a loose object (a source repository's, before any pack) is parsed to read."""
    b = GitRepoBuilder(tmp_path / "repo")
    b.write(".mailmap", b"Canon <c@x> <old@x>\n")
    b.git("add", "-A")
    tree = b.git("write-tree").decode().strip()
    who = b"Who <who@example.com> 12x34 +0000"
    body = b"tree %s\nauthor %s\ncommitter %s\n\nodd date\n" % (tree.encode(), who, who)
    head = b.git("hash-object", "-t", "commit", "--literally", "-w", "--stdin", stdin=body)
    head_sha = head.decode().strip()
    with Repo(str(b.path)) as repo:
        sha, mm = read_mailmap(repo, head_sha)
    assert sha == b.git("rev-parse", f"{head_sha}:.mailmap").decode().strip()
    assert mm.map("x", "old@x") == ("Canon", "c@x")
