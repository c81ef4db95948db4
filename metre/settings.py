"""One typed configuration object per process, read from METRE_* variables and CLI flags.

Nothing else in metre reads the environment: this object is built in `metre.cli` and passed down.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        default=500, ge=1, le=100_000, description="Most events a processor applies at once."
    )
    allow_local_paths: bool = Field(
        default=False,
        description="Accept local paths and file:// URLs (always on in `metre up`).",
    )
    consumer_session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="Kafka consumer group session timeout."
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    @property
    def mirrors_dir(self) -> Path:
        return self.data_dir / "mirrors"

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def embedded(self) -> bool:
        return self.kafka_bootstrap is None

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"
