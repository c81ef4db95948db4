"""Request and response shapes, for validation and the OpenAPI document (pure).

Handlers return plain data rendered by orjson; these models describe it in /docs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RepoState = Literal["pending", "polling", "idle", "failed"]
Granularity = Literal["day", "week", "month"]


class RepoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        description="https URL of the repository, or (where allowed) a local path or file:// URL",
        examples=["https://github.com/pallets/flask.git"],
    )
    branch: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Branch to track; default: the remote's HEAD",
    )


class Progress(BaseModel):
    done: int
    total: int


class RepoOut(BaseModel):
    id: int
    url: str
    branch: str | None
    state: RepoState
    error: str | None
    head: str | None = Field(description="Newest commit whose history was published")
    commits: int = Field(description="Commits ingested into the metrics so far")
    progress: Progress = Field(description="Commits published in the current poll")
    last_polled_at: datetime | None
    next_poll_at: datetime | None
    created_at: datetime


class RepoList(BaseModel):
    repos: list[RepoOut]


class PollAccepted(BaseModel):
    id: int
    state: RepoState


class PersonOut(BaseModel):
    name: str
    email: str
    time: datetime = Field(description="ISO 8601 with the person's own UTC offset")


class FileOut(BaseModel):
    path: str
    added: int
    removed: int
    binary: bool
    change: Literal["A", "D", "M", "T"]


class CommitOut(BaseModel):
    sha: str
    author: PersonOut
    committer: PersonOut
    parents: list[str]
    summary: str
    is_merge: bool
    files: list[FileOut]


class ActivityPoint(BaseModel):
    period: date = Field(description="Day; Monday of the ISO week; or first day of the month")
    commits: int
    merges: int
    added: int
    removed: int


class ActivityOut(BaseModel):
    repo_id: int
    granularity: Granularity
    series: list[ActivityPoint]


class AuthorOut(BaseModel):
    name: str
    email: str
    commits: int
    added: int
    removed: int
    first_commit_at: datetime
    last_commit_at: datetime


class AuthorsOut(BaseModel):
    repo_id: int
    authors: list[AuthorOut]


class ErrorInfo(BaseModel):
    status: int
    message: str
    detail: object | None = None


class ErrorOut(BaseModel):
    error: ErrorInfo
