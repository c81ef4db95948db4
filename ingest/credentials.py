"""Credentials for private repositories: the table, the lookup (pure) and the file loader (I/O).

The file (METRE_CREDENTIALS_FILE, JSON or TOML by suffix) maps a host (``git.example.com``,
``git.example.com:8443``) or a URL prefix (``https://git.example.com/team/``) to a login::

    ["https://git.example.com/team/"]
    username = "metre-bot"
    token = "glpat-..."          # or: password = "..."

    ["github.com"]
    username = "x-access-token"
    token = "ghp_..."

The longest matching URL prefix wins, then the host. Credentials are sent only as an HTTP
``Authorization`` header to the origin they were looked up for; they never become part of a
URL, a log line, an error message or an API response (the secret is kept out of `repr`).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "Credential",
    "CredentialTable",
    "CredentialsError",
    "credential_for",
    "load_credentials",
    "parse_credentials",
]


class CredentialsError(ValueError):
    """The credentials file cannot be used; the message never contains a secret."""


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    secret: str = field(repr=False)

    def __str__(self) -> str:
        return f"Credential(username={self.username!r}, secret=***)"


CredentialTable = Mapping[str, Credential]
"""Key: a host[:port] or a URL prefix containing ``://``."""


def _host_key(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return host, (f"{host}:{port}" if port else None)


def credential_for(table: CredentialTable, url: str) -> Credential | None:
    """The credential configured for `url`: longest URL prefix (at a ``/`` boundary), else
    ``host:port``, else host. None when nothing matches."""
    best: tuple[int, Credential] | None = None
    for key, cred in table.items():
        if "://" not in key:
            continue
        prefix = key if key.endswith("/") else key + "/"
        if (url.startswith(prefix) or url == key) and (best is None or len(key) > best[0]):
            best = (len(key), cred)
    if best is not None:
        return best[1]
    host, host_port = _host_key(url)
    lowered = {k.lower(): v for k, v in table.items() if "://" not in k}
    if host_port is not None and host_port in lowered:
        return lowered[host_port]
    return lowered.get(host) if host else None


def _entry(key: str, value: object) -> Credential:
    if not isinstance(value, Mapping):
        raise CredentialsError(f"credentials entry {key!r} must be a table/object")
    username = value.get("username")
    secret = value.get("token", value.get("password"))
    if not isinstance(username, str) or not username or ":" in username:
        raise CredentialsError(f"credentials entry {key!r} needs a username (without ':')")
    if not isinstance(secret, str) or not secret:
        raise CredentialsError(f"credentials entry {key!r} needs a token or a password")
    if any(c in username + secret for c in "\r\n\x00"):
        raise CredentialsError(f"credentials entry {key!r} contains control characters")
    return Credential(username, secret)


def parse_credentials(data: Mapping[str, object]) -> dict[str, Credential]:
    """The table from already-parsed JSON/TOML data (pure)."""
    return {str(key): _entry(str(key), value) for key, value in data.items()}


def load_credentials(path: Path) -> dict[str, Credential]:
    """Read a JSON (``.json``) or TOML (anything else) credentials file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read the credentials file {path}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        # Parser messages may quote the offending text, which can be a secret: position only.
        where = getattr(exc, "lineno", None)
        at = f" (line {where})" if where else ""
        raise CredentialsError(
            f"the credentials file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}{at}"
        ) from None
    if not isinstance(data, Mapping):
        raise CredentialsError(f"the credentials file {path} must hold a table/object")
    return parse_credentials(data)
