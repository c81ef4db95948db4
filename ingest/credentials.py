"""Credentials for private repositories: the table, the lookup (pure) and the file loader (I/O).

The file (METRE_CREDENTIALS_FILE, JSON or TOML by suffix) maps a host (``git.example.com``,
``git.example.com:8443``) or a URL prefix (``https://git.example.com/team/``) to a login::

    ["https://git.example.com/team/"]
    username = "metre-bot"
    token = "glpat-..."          # or: password = "..."

    ["github.com"]
    username = "x-access-token"
    token = "ghp_..."

The longest matching URL prefix wins, then ``host:port``, then the host. A credential is sent
only over TLS and only to the origin it names: a URL prefix to its own scheme, host and port
(``https`` only: an ``http://`` prefix is refused when the file is read), a bare host to
``https`` on port 443 of that host, ``host:port`` to ``https`` on that port. A plain ``http://``
repository never gets one, nor another port of the same host. Credentials are sent only as an
HTTP ``Authorization`` header to the origin they were looked up for (ssh authenticates with the
keys of the account metre runs as); they never become part of a URL, a log line, an error
message or an API response (the secret is kept out of `repr`).
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


Origin = tuple[str, str, int]
"""(scheme, lower-case host, effective port) of a URL."""

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _origin(url: str) -> tuple[Origin, str] | None:
    """(origin, path) of an http(s) URL; None when it has no host or an invalid port."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if not host or port is None:
        return None
    return (scheme, host, port), parts.path or "/"


def _key_origin(key: str) -> Origin | None:
    """The https origin a bare ``host`` or ``host:port`` key stands for."""
    found = _origin(f"https://{key}/")
    return found[0] if found else None


def credential_for(table: CredentialTable, url: str) -> Credential | None:
    """The credential configured for `url`, or None: nothing matches or `url` is not https.

    The longest URL prefix of the same origin (scheme, host, port) whose path is a prefix of
    the URL's at a ``/`` boundary wins; else a ``host:port`` key equal to the URL's https
    origin; else a bare host key, for https on port 443 only."""
    found = _origin(url)
    if found is None or found[0][0] != "https":
        return None
    origin, path = found
    best: tuple[int, Credential] | None = None
    for key, cred in table.items():
        if "://" not in key:
            continue
        entry = _origin(key)
        if entry is None or entry[0] != origin:
            continue
        prefix = entry[1] if entry[1].endswith("/") else entry[1] + "/"
        if (path.startswith(prefix) or path == entry[1]) and (best is None or len(key) > best[0]):
            best = (len(key), cred)
    if best is not None:
        return best[1]
    hosts = [(k, c) for k, c in table.items() if "://" not in k and _key_origin(k) == origin]
    exact = [c for k, c in hosts if ":" in k]
    if exact:
        return exact[0]
    bare = [c for k, c in hosts if ":" not in k]
    return bare[0] if bare and origin[2] == _DEFAULT_PORTS["https"] else None


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


def _check_key(key: str) -> None:
    """Refuse a key whose credential could only be sent in clear or to no origin."""
    if "://" in key:
        if urlsplit(key).scheme.lower() != "https":
            raise CredentialsError(
                f"credentials entry {key!r}: credentials are sent over https only (TLS); "
                "give an https:// prefix or a host"
            )
        if _origin(key) is None:
            raise CredentialsError(f"credentials entry {key!r} is not a valid URL prefix")
    elif _key_origin(key) is None:
        raise CredentialsError(f"credentials entry {key!r} is not a host or host:port")


def parse_credentials(data: Mapping[str, object]) -> dict[str, Credential]:
    """The table from already-parsed JSON/TOML data (pure)."""
    table = {}
    for raw, value in data.items():
        key = str(raw)
        _check_key(key)
        table[key] = _entry(key, value)
    return table


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
