"""Where metre keeps the mirror of a registered repository (pure; no dulwich: the API and the
processors' removals name mirrors too)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["mirror_path"]


def mirror_path(mirrors_dir: Path, repo_id: int) -> Path:
    """Where the bare mirror of repository `repo_id` lives (it may not exist yet)."""
    return mirrors_dir / f"{repo_id}.git"
