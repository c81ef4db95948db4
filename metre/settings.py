"""One typed configuration object per process, read from METRE_* variables and CLI flags.

Nothing else in metre reads the environment: this object is built in `metre.cli` and passed down.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metre.ingest.releases import DEFAULT_PATTERNS as DEFAULT_RELEASE_PATTERNS
from metre.ingest.releases import parse_patterns
from metre.ingest.urlpolicy import REMOTE_SCHEMES, UrlPolicy


def _default_data_dir() -> Path:
    return platformdirs.user_data_path("metre")


class Settings(BaseSettings):
    """Everything a metre process can be told. Unset database/Kafka means the embedded default."""

    model_config = SettingsConfigDict(env_prefix="METRE_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Mirrors, the embedded PostgreSQL and runtime files live here.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL DSN; unset runs the embedded PostgreSQL under data_dir.",
    )
    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers (host:port,...); unset uses the in-process bus.",
    )
    topic_prefix: str = Field(default="metre", description="Prefix of every topic name.")
    partitions: int = Field(default=8, ge=1, le=1024, description="Partitions of new topics.")
    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the API listens on.")
    poll_interval: float = Field(
        default=60.0, gt=0, description="Seconds between two polls of one repository."
    )
    batch_size: int = Field(
        default=2000,
        ge=1,
        le=100_000,
        description="Most events a processor applies at once (larger batches merge more rows).",
    )
    allow_local_paths: bool = Field(
        default=False,
        description="Accept local paths and file:// URLs (always on in `metre up`).",
    )
    allowed_schemes: str = Field(
        default="https",
        description="Comma-separated URL schemes accepted for repositories: https, http, ssh, "
        "git (ssh also admits scp-like user@host:path).",
    )
    allow_private_hosts: bool = Field(
        default=False,
        description="Fetch from hosts resolving to loopback, private, link-local, CGNAT, "
        "unique-local and other non-public addresses.",
    )
    credentials_file: Path | None = Field(
        default=None,
        description="JSON or TOML file mapping a host or URL prefix to a username and token "
        "for private repositories (see ingest/credentials.py).",
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the certificate authorities https fetches trust, instead of "
        "the system's (a private git server with its own CA). Host names are checked either way.",
    )
    api_tokens: SecretStr | None = Field(
        default=None,
        description="Comma-separated bearer tokens; when set, write endpoints require one.",
    )
    read_requires_token: bool = Field(
        default=False, description="Require a token for reads too (when api_tokens is set)."
    )
    api_token: SecretStr | None = Field(
        default=None, description="The token `metre add` and `metre status` send."
    )
    rate_limit: float = Field(
        default=500.0, ge=0, description="Requests per second per client (0 disables)."
    )
    rate_burst: int = Field(default=1000, ge=1, description="Requests a client may burst.")
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or CIDRs of reverse proxies in front of the API: "
        "a request from one is attributed to the rightmost X-Forwarded-For hop that is not one.",
    )
    rate_limit_loopback: bool | None = Field(
        default=None,
        description="Rate-limit loopback clients too (true), never (false), or unset: exempt "
        "them only while no trusted proxy is configured and the request is not forwarded.",
    )
    consumer_session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="Kafka consumer group session timeout."
    )
    ingest_workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Worker processes computing the events of a long backfill (unset: one "
        "per CPU; 1 keeps it in the poller's process). Short polls never start workers.",
    )
    retry_cap: float = Field(
        default=900.0,
        gt=0,
        description="Longest wait, in seconds, between two polls of a failing repository (the "
        "wait doubles from 5 s after each failure up to this).",
    )
    give_up_after: float | None = Field(
        default=None,
        gt=0,
        description="Seconds of continuous failure after which a repository is abandoned (no "
        "longer polled, its error kept, until resumed); unset: never.",
    )
    reconcile_interval: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds between two anti-entropy passes of `metre up` (and at its start).",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    # --- notify ---
    notify_check_interval: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="Seconds between two evaluations of the notification rules.",
    )
    notify_digest_interval: float = Field(
        default=3600.0,
        ge=0,
        le=7 * 86_400,
        description="Least seconds between two digests to one notification target (the first "
        "alert after a quiet interval leaves at once; 0 sends every evaluation's alerts).",
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Attempts to deliver one digest before it is failed."
    )
    notify_retry_cap: float = Field(
        default=900.0,
        gt=0,
        description="Longest wait, in seconds, between two attempts to deliver a digest (the "
        "wait doubles from 5 s).",
    )
    # --- hooks ---
    webhook_max_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest push-webhook body accepted, in bytes (a larger one is refused "
        "with 413 before it is read whole).",
    )
    webhook_replay_window: float = Field(
        default=86_400.0,
        gt=0,
        description="Seconds a webhook delivery id is remembered: the same delivery within "
        "this window is refused as a replay (409).",
    )
    # --- observe ---
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log records as plain text lines, or as JSON lines (one event per line) for a "
        "log collector.",
    )
    health_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="Port on which `metre poller` and `metre processor` serve /healthz, /readyz "
        "and /metrics (0: none). The API serves them on its own port.",
    )
    health_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - probes and scrapes come from outside the pod
        description="Address of the health port: all interfaces by default, since probes and "
        "Prometheus reach a pod by its address; it serves no data beyond counts and states.",
    )
    # --- heal ---
    bus_check_interval: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between two comparisons of the broker's offsets and cluster id "
        "with the bus marks in PostgreSQL (data-loss detection; also at once when a produce "
        "is acknowledged below an earlier one).",
    )
    lag_intervals: float = Field(
        default=3.0,
        gt=0,
        description="Poll intervals after which a repository whose stored head is not applied "
        "is flagged lagging (and reconciled).",
    )
    outage_summary_interval: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between two log summaries while a dependency stays away.",
    )

    # --- deploy ---
    read_database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL DSN of a read-only replica (CloudNativePG's -ro service) the "
        "API sends metric reads to; unset: METRE_DATABASE_URL. Registry reads and writes "
        "always go to METRE_DATABASE_URL.",
    )
    # --- api-holes ---
    auth_failure_limit: int = Field(
        default=10,
        ge=0,
        le=1_000_000,
        description="Wrong API tokens a client may present in a row before each further one "
        "refuses it with 429 for a doubling time (1 s, 2 s, ... up to auth_backoff_cap); "
        "0 disables.",
    )
    auth_backoff_cap: float = Field(
        default=300.0,
        ge=1,
        le=86_400,
        description="Longest refusal, in seconds, of a client presenting wrong API tokens; "
        "as long without a failure and its count starts again.",
    )

    @field_validator("allowed_schemes")
    @classmethod
    def _known_schemes(cls, value: str) -> str:
        schemes = {s.strip().lower() for s in value.split(",") if s.strip()}
        unknown = schemes - REMOTE_SCHEMES
        if unknown:
            raise ValueError(f"unknown schemes {sorted(unknown)}; known: {sorted(REMOTE_SCHEMES)}")
        return ",".join(sorted(schemes))

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in (s.strip() for s in value.split(",")):
            if item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"not an address or CIDR: {item!r}") from None
        return value

    @property
    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """METRE_TRUSTED_PROXIES parsed (an address is a /32 or /128 network)."""
        items = (s.strip() for s in self.trusted_proxies.split(","))
        return [ipaddress.ip_network(item, strict=False) for item in items if item]

    @property
    def url_policy(self) -> UrlPolicy:
        """What repositories may be registered and fetched (metre.ingest.urlpolicy)."""
        return UrlPolicy(
            frozenset(s for s in self.allowed_schemes.split(",") if s),
            allow_private_hosts=self.allow_private_hosts,
            allow_local_paths=self.allow_local_paths,
        )

    @property
    def tokens(self) -> list[str]:
        """The configured API tokens (empty: the API is open)."""
        raw = self.api_tokens.get_secret_value() if self.api_tokens else ""
        return [t.strip() for t in raw.split(",") if t.strip()]

    @property
    def mirrors_dir(self) -> Path:
        return self.data_dir / "mirrors"

    @property
    def ssh_control_dir(self) -> Path:
        return self.data_dir / "ssh"

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def embedded(self) -> bool:
        return self.kafka_bootstrap is None

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    # --- remote-safety ---
    fetch_connect_timeout: float = Field(
        default=20.0,
        gt=0,
        le=3600,
        description="Seconds a fetch waits for a TCP connection to a remote (ssh: "
        "ConnectTimeout, banner exchange included).",
    )
    fetch_idle_timeout: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description="Seconds a fetch waits for the next byte from a remote before failing "
        "(ssh: keep-alives every third of it, 3 missed answers fail).",
    )
    fetch_timeout: float = Field(
        default=1800.0,
        gt=0,
        le=604_800,
        description="Seconds one fetch from a remote may take in all; then its connections "
        "are closed and the repository fails with a message naming this setting.",
    )
    ssh_reuse: int = Field(
        default=60,
        ge=0,
        le=86_400,
        description="Seconds an ssh connection to a remote stays open after a fetch for the "
        "next fetch of the same host to reuse (OpenSSH's ControlPersist; a poll then skips the "
        "handshake); 0: a new connection per fetch.",
    )
    poll_lease: float = Field(
        default=120.0,
        ge=5,
        le=3600,
        description="Seconds a poller holds a repository it claimed, renewed every third of "
        "it while the poll runs; a poller that dies lets its repositories go after at most "
        "this long.",
    )
    poll_concurrency: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Repositories one poller polls at once (a slow remote holds one of them).",
    )
    # --- releases ---
    release_tags: str = Field(
        default=DEFAULT_RELEASE_PATTERNS,
        description="Comma-separated globs (case-sensitive, on the name after refs/tags/) of "
        "the tags that are releases; empty: none.",
    )

    @property
    def release_patterns(self) -> tuple[str, ...]:
        """METRE_RELEASE_TAGS as a tuple of globs."""
        return parse_patterns(self.release_tags)
