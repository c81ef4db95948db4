"""Request and response shapes, for validation and the OpenAPI document (pure).

Handlers return plain data rendered by orjson; these models describe it in /docs.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

INT64_MAX = 2**63 - 1
"""The largest integer any parameter takes: PostgreSQL's bigint (asyncpg overflows beyond)."""
INT32_MAX = 2**31 - 1
"""The bound of counts and offsets, which never come near it."""


_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored or compared as PostgreSQL text, or None when it can.

    PostgreSQL text holds no NUL character and UTF-8 has no lone surrogates (JSON's
    ``"\\ud800"``): either would reach the database driver and fail there as a 500.
    """
    if "\x00" in value:
        return "contains a NUL character"
    if _SURROGATE.search(value):
        return "contains a lone surrogate (not valid Unicode text)"
    return None


class Input(BaseModel):
    """A request body: unknown fields refused, every string storable as text."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        if isinstance(value, str) and (problem := text_problem(value)):
            raise ValueError(problem)
        return value


RepoState = Literal["pending", "polling", "idle", "failed", "paused", "abandoned", "lagging"]
Granularity = Literal["day", "week", "month"]


class RepoIn(Input):
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
    # --- hooks ---
    webhook_secret: SecretStr | None = Field(
        default=None,
        min_length=8,
        max_length=256,
        description="Secret the repository's push webhooks are signed with (docs/webhooks.md); "
        "stored, never returned",
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
    lagging: bool = Field(
        default=False,
        description="The stored head is not applied METRE_LAG_INTERVALS poll intervals after "
        "it was stored (metre reconciles it); not a state",
    )
    lagging_reason: str | None = Field(default=None, description="Why it lags (null: it does not)")
    last_polled_at: datetime | None
    next_poll_at: datetime | None
    created_at: datetime
    webhook: bool = Field(description="Whether a push-webhook secret is set (never shown)")


class RepoList(BaseModel):
    repos: list[RepoOut]
    total: int = Field(description="Repositories registered (every page)")
    limit: int | None = Field(description="Page size asked for (null: every row)")
    offset: int


class PollAccepted(BaseModel):
    id: int
    state: RepoState


class PersonOut(BaseModel):
    name: str
    email: str
    time: datetime = Field(description="ISO 8601 with the person's own UTC offset")
    time_raw: str | None = Field(
        default=None,
        description="The recorded date text when `time` is a stand-in for a date git shows but "
        "a timestamp cannot hold (no date, after year 9999, an offset of 24 h or more); "
        "null when `time` is exact (docs/events.md, Dates)",
    )


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


class Provenance(BaseModel):
    repo_id: int | None = Field(default=None, description="The repository (its own form only)")
    head: str | None = Field(default=None, description="Newest commit the poller published")
    watermark: datetime | None = Field(
        default=None, description="When the repository's metric tables last changed"
    )
    repos: list[RepoStamp] | None = Field(
        default=None, description="Each repository's stamp (organisation-wide form only)"
    )
    same_history: list[SameHistory] | None = Field(
        default=None,
        description="Repositories left out because another holds the same history "
        "(same root commits, all commits among the other's; organisation-wide form only)",
    )
    identities: int | None = Field(
        default=None,
        description="The identity generation people metrics were regrouped with "
        "(GET /api/v1/identities; changes at every merge, split, enrolment or bot change)",
    )
    metric: str
    version: int
    params: dict[str, object]


class SameHistory(BaseModel):
    repo_id: int
    counted_as: int = Field(description="The repository that stands for this history")


class RepoStamp(BaseModel):
    repo_id: int
    head: str | None
    watermark: datetime | None


class ActivityOut(BaseModel):
    repo_id: int
    granularity: Granularity
    series: list[ActivityPoint]
    provenance: Provenance


class AuthorOut(BaseModel):
    name: str
    email: str = Field(description="The individual's smallest email (code point order)")
    individual: str = Field(description="The individual's id (GET /api/v1/identities/{id})")
    emails: list[str] = Field(description="Every email of the individual")
    commits: int
    added: int
    removed: int
    first_commit_at: datetime
    last_commit_at: datetime


class AuthorsOut(BaseModel):
    repo_id: int
    authors: list[AuthorOut]
    total: int = Field(description="Authors counted by the policy (every page)")
    provenance: Provenance


class ErrorInfo(BaseModel):
    status: int
    message: str
    detail: object | None = None


class ErrorOut(BaseModel):
    error: ErrorInfo


class ActivityOrgOut(BaseModel):
    granularity: Granularity
    series: list[ActivityPoint]
    provenance: Provenance


class ParamOut(BaseModel):
    name: str
    type: str
    default: object
    description: str
    choices: list[object] | None = None
    minimum: int | None = Field(None, description="Least integer accepted, when bounded")
    maximum: int | None = Field(None, description="Greatest integer accepted, when bounded")
    min_length: int | None = Field(None, description="Shortest text accepted, when bounded")
    max_length: int | None = Field(None, description="Longest text accepted, when bounded")


class MetricOut(BaseModel):
    name: str
    definition: str
    unit: str
    version: int
    parameters: list[ParamOut]
    organisation_wide: bool
    sources: list[str] = Field(description="The additive tables the metric reads")


class CatalogueOut(BaseModel):
    metrics: list[MetricOut]


class ContributorsPoint(BaseModel):
    period: date
    active: int
    new: int
    returning: int
    cumulative: int


class ContributorsOut(BaseModel):
    repo_id: int | None = None
    granularity: Granularity
    gap_days: int
    series: list[ContributorsPoint]
    provenance: Provenance


class PunchcardOut(BaseModel):
    repo_id: int | None = None
    total: int
    commits: list[list[int]] = Field(description="7 rows (Monday first) of 24 hourly counts")
    provenance: Provenance


class HistogramBin(BaseModel):
    min: int
    max: int
    commits: int


class SizeDistribution(BaseModel):
    commits: int
    mean: float | None
    percentiles: dict[str, int | None] = Field(description="p50, p75, p90, p99 (nearest rank)")
    histogram: list[HistogramBin]


class CommitSizeOut(BaseModel):
    repo_id: int | None = None
    files: SizeDistribution
    lines: SizeDistribution
    provenance: Provenance


class LanguageRow(BaseModel):
    language: str
    changes: int
    added: int
    removed: int
    lines: int = Field(description="Net lines: added - removed")
    bytes: int | None = Field(
        default=None,
        description="Bytes at head: the sizes of the language's text blobs at head (GitHub's "
        "measure); null while some commit's blob measures are unknown",
    )


class LanguagesOut(BaseModel):
    repo_id: int | None = None
    mapping: str = Field(
        description="The Linguist port that classified the paths (go-enry version)"
    )
    languages: list[LanguageRow]
    provenance: Provenance
