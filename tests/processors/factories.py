"""Commit events for processor tests: a plain builder and hypothesis strategies."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

from metre.contracts.events import CommitEvent, FileChange, MergeFile, Person


def sha(n: object) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


def person(
    name: str = "Ada", email: str = "ada@example.org", time: str = "2024-03-04T10:00:00+00:00"
) -> Person:
    return Person(name, email, datetime.fromisoformat(time))


def event(
    n: object,
    *,
    repo_id: int = 1,
    author: Person | None = None,
    files: tuple[FileChange, ...] = (FileChange("a.txt", 3, 1),),
    merge: bool = False,
    merge_files: tuple[MergeFile, ...] = (),
) -> CommitEvent:
    a = author or person()
    parents = (sha(f"p{n}"), sha(f"q{n}")) if merge else (sha(f"p{n}"),)
    return CommitEvent(
        repo_id=repo_id,
        sha=sha(n),
        parents=parents,
        author=a,
        committer=a,
        summary=f"commit {n}",
        files=() if merge else files,
        merge_files=merge_files if merge else (),
    )


_offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
_times = st.builds(
    lambda s, tz: datetime.fromtimestamp(s, tz),
    st.integers(min_value=0, max_value=2_000_000_000),
    _offsets,
)
_people = st.builds(
    Person,
    name=st.sampled_from(["Ada", "Bob", "bob", "Zoë", "李"]),
    email=st.sampled_from(["ada@x.org", "ADA@x.org", "bob@y.org", "zoe@z.org"]),
    time=_times,
)
_files = st.lists(
    st.builds(
        FileChange,
        path=st.sampled_from(["a", "b/c.py", "d.bin"]),
        added=st.integers(0, 50),
        removed=st.integers(0, 50),
    ),
    max_size=3,
).map(tuple)


@st.composite
def commit_events(draw: st.DrawFn, repo_ids: tuple[int, ...] = (1, 2)) -> CommitEvent:
    """A commit with a unique-ish sha (drawn from a small space, so duplicates happen)."""
    n = draw(st.integers(0, 30))
    merge = draw(st.booleans())
    author = draw(_people)
    return CommitEvent(
        repo_id=draw(st.sampled_from(repo_ids)),
        sha=sha(n),
        parents=(sha(f"p{n}"), sha(f"q{n}")) if merge else (sha(f"p{n}"),),
        author=author,
        committer=draw(_people),
        summary=draw(st.text(max_size=20).filter(lambda s: "\x00" not in s)),
        files=() if merge else draw(_files),
    )
