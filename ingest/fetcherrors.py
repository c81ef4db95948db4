"""What a failed fetch or mirror read says: one line, safe to show (no stack trace text, no
credentials), whichever of dulwich, urllib3, ssl or the OS raised it.
"""

from __future__ import annotations

import ssl
import zlib
from urllib.parse import urlsplit

from dulwich.client import HTTPUnauthorized
from dulwich.errors import GitProtocolError, NotGitRepository, WrongObjectException

from metre.ingest.git.rawread import CORRUPT
from metre.ingest.transport import RedirectRefused

__all__ = ["FETCH_ERRORS", "describe", "redact"]

try:  # urllib3 is dulwich's HTTP client; its errors have their own base class
    from urllib3.exceptions import HTTPError as _Urllib3Error
except ImportError:  # pragma: no cover - urllib3 ships with dulwich's http support
    _Urllib3Error = OSError  # type: ignore[assignment,misc]

FETCH_ERRORS: tuple[type[BaseException], ...] = (
    *CORRUPT,  # a corrupt remote, source or mirror fails as a damaged object store does
    NotGitRepository,
    GitProtocolError,
    HTTPUnauthorized,
    _Urllib3Error,
    KeyError,
    WrongObjectException,
    BufferError,  # closing a source's pack map after a failed read (the cause is the context)
)
"""What dulwich raises for unreachable, refusing, non-repository or corrupt remotes."""


def redact(url: str) -> str:
    """The URL without any user:password part, for messages."""
    if "@" not in url or "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=host).geturl()


def describe(exc: BaseException) -> str:
    """A one-line, credential-free description of why a fetch failed."""
    while isinstance(exc, BufferError) and exc.__context__ is not None:
        exc = exc.__context__
    refused = exc if isinstance(exc, RedirectRefused) else exc.__cause__ or exc.__context__
    if isinstance(refused, RedirectRefused):
        return str(refused)
    tls = _tls_refusal(exc)
    if tls is not None:
        return tls
    if isinstance(exc, NotGitRepository):
        return "not a git repository"
    if isinstance(exc, HTTPUnauthorized):
        return "the server asks for credentials (private repository?)"
    if isinstance(exc, FileNotFoundError):
        return "no such repository"
    if isinstance(exc, OSError | _Urllib3Error) and not isinstance(exc, GitProtocolError):
        return f"the repository cannot be reached ({type(exc).__name__})"
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, GitProtocolError) and isinstance(cause, OSError | _Urllib3Error):
        return f"the repository cannot be reached ({type(cause).__name__})"
    if isinstance(exc, GitProtocolError):
        # often the remote's stderr, whose last line is the conclusion (ssh writes a banner
        # of @ before "Host key verification failed.")
        lines = [line for line in str(exc).splitlines() if line.strip()]
        text = lines[-1] if lines else type(exc).__name__
        return f"the server refused or broke the exchange: {redact(text)[:200]}"
    name = "zlib.error" if isinstance(exc, zlib.error) else type(exc).__name__
    return f"the repository is corrupt or unreadable ({name})"


def _tls_refusal(exc: BaseException) -> str | None:
    """Why the server's TLS certificate was refused, if that is the failure (urllib3 and
    dulwich wrap the ssl error in their own; it is found along the causes)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"the server's TLS certificate was refused ({e.verify_message})"
        todo += [e.__cause__, e.__context__, *(a for a in e.args if isinstance(a, BaseException))]
        todo.append(getattr(e, "reason", None))
    return None
