"""The one error a repository that cannot be read raises (no dulwich: importing it loads none)."""

from __future__ import annotations

__all__ = ["RepositoryError"]


class RepositoryError(Exception):
    """The repository cannot be read: missing or corrupt objects, unknown revisions, bad URLs.

    The message is meant for users: no stack trace text, no credentials.
    """
