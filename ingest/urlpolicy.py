"""Which repository URLs metre fetches, and from which addresses (pure: the resolver is injected).

The rules (docs/reliability.md names the test behind each):

- schemes: ``https`` by default; ``http``, ``ssh`` (``ssh://`` and scp-like ``user@host:path``)
  and ``git`` only when listed in `UrlPolicy.allowed_schemes`; local paths and ``file://`` only
  with `UrlPolicy.allow_local_paths`; transport helpers (``ext::``, ``fd::``, ``<helper>::``),
  option-like strings, control characters, whitespace and credentials inside URLs never;
- hosts: every address a name resolves to must be public unless `allow_private_hosts`
  (loopback, RFC 1918, link-local incl. 169.254.169.254 and fe80::/10, CGNAT 100.64.0.0/10,
  unique-local fc00::/7, unspecified, multicast, reserved and other non-global ranges are
  refused); the fetch then connects to the address that was checked (`metre.ingest.repourls`).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from metre.ingest.deadlines import ConnectTimedOut

__all__ = [
    "REMOTE_SCHEMES",
    "InvalidRepositoryURL",
    "Remote",
    "Resolver",
    "UrlPolicy",
    "address_refusal",
    "check_addresses",
    "embedded_ipv4",
    "parse_remote",
    "pinned_address",
]

REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git"})
"""Network schemes that can be enabled (METRE_ALLOWED_SCHEMES)."""

DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}

Scheme = Literal["https", "http", "ssh", "git", "local"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> the addresses it resolves to, in connection order; raises OSError."""

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# A DNS name (letters, digits, hyphens, underscores in labels, dots between) after IDNA.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
    r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?$"
)
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(?!//)")
_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:\[\]]+|\[[0-9a-fA-F:.]+\]):(?P<path>.*)$")


class InvalidRepositoryURL(ValueError):
    """A URL or path that metre will not fetch; the message says why (never a credential)."""


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """What may be registered and fetched. The default is the safe one: public https only."""

    allowed_schemes: frozenset[str] = field(default_factory=lambda: frozenset({"https"}))
    allow_private_hosts: bool = False
    allow_local_paths: bool = False

    def to_json(self) -> str:
        """The form stored with a repository at registration (migration 0015)."""
        return json.dumps(
            {
                "schemes": sorted(self.allowed_schemes & REMOTE_SCHEMES),
                "private_hosts": self.allow_private_hosts,
                "local_paths": self.allow_local_paths,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> UrlPolicy:
        """The policy `to_json` stored; raises ValueError for anything else."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a stored URL policy must be a JSON object")
        schemes = data.get("schemes")
        private, local = data.get("private_hosts"), data.get("local_paths")
        if not isinstance(schemes, list) or not all(isinstance(s, str) for s in schemes):
            raise ValueError("a stored URL policy needs a list of schemes")
        if not isinstance(private, bool) or not isinstance(local, bool):
            raise ValueError("a stored URL policy needs private_hosts and local_paths")
        return cls(frozenset(schemes) & REMOTE_SCHEMES, private, local)


@dataclass(frozen=True, slots=True)
class Remote:
    """A parsed repository location. `url` is the canonical form that is stored and fetched."""

    scheme: Scheme
    url: str
    host: str | None = None
    """Lower-case host name or IP literal (no brackets); None for local paths."""
    port: int | None = None
    """The effective port (the scheme's default when the URL gives none)."""
    username: str | None = None
    """ssh login name only (``git@``); http(s) URLs never carry one."""


def _refuse(message: str) -> InvalidRepositoryURL:
    return InvalidRepositoryURL(message)


def _schemes_text(policy: UrlPolicy) -> str:
    allowed = sorted(policy.allowed_schemes & REMOTE_SCHEMES)
    text = ", ".join(f"{s}://" for s in allowed) or "no network URLs"
    return text + (" and local paths" if policy.allow_local_paths else "")


def _require_scheme(scheme: str, policy: UrlPolicy) -> None:
    if scheme not in policy.allowed_schemes:
        raise _refuse(
            f"unsupported URL scheme {scheme!r} on this server: accepted are "
            f"{_schemes_text(policy)} (METRE_ALLOWED_SCHEMES)"
        )


def _host(raw: str | None) -> str:
    if not raw:
        raise _refuse("the repository URL has no valid host")
    host = raw.strip("[]").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    if host.startswith("-"):
        raise _refuse("a repository host cannot start with '-'")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise _refuse("the repository URL has no valid host") from None
    if not _HOSTNAME.match(ascii_host):
        raise _refuse("the repository URL has no valid host")
    canonical = ascii_host.rstrip(".")  # "example.org." and "example.org" are one host
    if not canonical:
        raise _refuse("the repository URL has no valid host")
    return canonical


def parse_remote(url: str, policy: UrlPolicy) -> Remote:
    """Check the syntax of `url` against `policy`; raises `InvalidRepositoryURL`.

    Local paths come back as ``Remote("local", path)`` with the path as given (the caller
    checks the filesystem). No name is resolved here.
    """
    if not url or not url.strip():
        raise _refuse("the repository URL is empty")
    if url.startswith("-"):
        raise _refuse("a repository URL cannot start with '-'")
    if "::" in url.split("/", 1)[0]:
        raise _refuse("git transport helpers (such as ext::) are not accepted")
    if _CONTROL.search(url):
        raise _refuse("the repository URL contains spaces or control characters")
    if url.startswith("/"):
        return _local(url, policy)
    if "://" not in url:
        scp = _SCP.match(url)
        scheme_like = _URI_SCHEME.match(url)
        if scheme_like is not None and (scp is None or not _looks_scp(scp)):
            # ``javascript:alert(1)``, ``mailto:x``: a URI of another scheme, not ssh
            raise _refuse(
                f"unsupported URL scheme {scheme_like.group(1).lower()!r}: accepted are "
                f"{_schemes_text(policy)} (scp-like ssh is written user@host:path)"
            )
        if scp is None:
            raise _refuse(
                "relative paths are not accepted; give a URL"
                + (" or an absolute path" if policy.allow_local_paths else "")
            )
        return _scp(url, scp, policy)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _refuse("a file:// URL must name a path on this machine")
        return _local(unquote(parts.path), policy)
    if scheme not in REMOTE_SCHEMES:
        raise _refuse(f"unsupported URL scheme {scheme!r}: accepted are {_schemes_text(policy)}")
    _require_scheme(scheme, policy)
    if parts.password is not None or (parts.username is not None and scheme != "ssh"):
        raise _refuse(
            "credentials in the repository URL are not accepted (configure them in "
            "METRE_CREDENTIALS_FILE)"
        )
    try:
        port = parts.port
    except ValueError:
        raise _refuse("the repository URL has an invalid port") from None
    host = _host(parts.hostname)
    username = unquote(parts.username) if parts.username else None
    if username is not None and (username.startswith("-") or _CONTROL.search(username)):
        raise _refuse("the ssh user name is not valid")
    if port == 0:
        raise _refuse("the repository URL has an invalid port")
    if parts.fragment or url.endswith("#"):
        raise _refuse("the repository URL cannot have a fragment (#...)")
    effective = port or DEFAULT_PORTS[scheme]
    return Remote(
        scheme,  # type: ignore[arg-type]  # checked against REMOTE_SCHEMES above
        _canonical_url(scheme, parts.username, host, effective, parts.path, parts.query),
        host=host,
        port=effective,
        username=username,
    )


def _netloc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _trim_path(path: str) -> str:
    """The path without trailing slashes (``/team/r/`` and ``/team/r`` are one repository)."""
    trimmed = path.rstrip("/")
    return trimmed if trimmed or not path else "/"


def _canonical_url(
    scheme: str, user: str | None, host: str, port: int, path: str, query: str
) -> str:
    """One spelling per repository: lower-case host without a trailing dot, the scheme's
    default port dropped, no trailing slash (the identity under which it is registered)."""
    login = f"{user}@" if user else ""
    at = "" if port == DEFAULT_PORTS[scheme] else f":{port}"
    tail = f"?{query}" if query else ""
    return f"{scheme}://{login}{_netloc_host(host)}{at}{_trim_path(path)}{tail}"


def _looks_scp(match: re.Match[str]) -> bool:
    """Whether ``x:y`` without ``://`` is git's scp-like ssh form rather than a URI of some
    scheme: it names a user (``git@host:path``), a dotted or bracketed host, or ``localhost``."""
    host = match.group("host")
    return (
        match.group("user") is not None
        or "." in host
        or host.startswith("[")
        or (host.lower() == "localhost")
    )


def _scp(url: str, match: re.Match[str], policy: UrlPolicy) -> Remote:
    """``[user@]host:path``, git's scp-like ssh syntax."""
    _require_scheme("ssh", policy)
    user = match.group("user")
    if user is not None and (user.startswith("-") or ":" in user):
        raise _refuse("the ssh user name is not valid")
    host = _host(match.group("host"))
    path = match.group("path")
    if not path:
        raise _refuse("the repository URL has no path")
    login = f"{user}@" if user is not None else ""
    canonical = f"{login}{_netloc_host(host)}:{_trim_path(path)}"
    return Remote("ssh", canonical, host=host, port=DEFAULT_PORTS["ssh"], username=user)


def _local(path: str, policy: UrlPolicy) -> Remote:
    if not policy.allow_local_paths:
        raise _refuse(
            "local paths are not accepted on this server (METRE_ALLOW_LOCAL_PATHS=true admits them)"
        )
    if not path.startswith("/"):
        raise _refuse("a local repository must be given as an absolute path")
    return Remote("local", path)


_NAMED_RANGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("unspecified", ("0.0.0.0/8", "::/128")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    ("private (RFC 1918)", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")),
    ("shared (CGNAT)", ("100.64.0.0/10",)),
    ("unique-local", ("fc00::/7",)),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
    ("reserved", ("240.0.0.0/4",)),
)
_RANGES = [(name, [ipaddress.ip_network(n) for n in nets]) for name, nets in _NAMED_RANGES]


_V4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_V4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known prefix (RFC 6052)
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # local-use prefix (RFC 8215)
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")


def _rfc6052(value: int, prefix: int) -> ipaddress.IPv4Address:
    """The IPv4 address RFC 6052 places after a `prefix`-bit prefix (bits 64-71 skipped)."""
    bits = f"{value:0128b}"
    if prefix == 96:
        return ipaddress.IPv4Address(int(bits[96:], 2))
    payload = (bits[:64] + bits[72:])[prefix : prefix + 32]
    return ipaddress.IPv4Address(int(payload, 2))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 form can carry to an IPv4 host: IPv4-mapped, IPv4-translated
    (SIIT), IPv4-compatible, NAT64 (64:ff9b::/96; 64:ff9b:1::/48 at each RFC 6052 position
    within it), 6to4 and Teredo (server and client). Empty for a plain IPv6 address."""
    value = int(ip)
    if ip in _V4_MAPPED or ip in _V4_TRANSLATED or ip in _NAT64:
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if ip in _NAT64_LOCAL:
        # A local translator may use any prefix length inside the /48: every reading, the
        # /96 one (the usual deployment) first.
        readings = [_rfc6052(value, n) for n in (96, 64, 56, 48)]
        return list(dict.fromkeys(readings))
    if ip in _SIX_TO_FOUR:
        return [ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)]
    if ip in _TEREDO:
        server = ipaddress.IPv4Address((value >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~value & 0xFFFFFFFF)
        return [server, client]
    if value >> 32 == 0 and value > 1:  # ::a.b.c.d (deprecated IPv4-compatible)
        return [ipaddress.IPv4Address(value)]
    return []


def _range_refusal(ip: IPAddress) -> str | None:
    for name, networks in _RANGES:
        if any(ip.version == n.version and ip in n for n in networks):
            return name
    if not ip.is_global:
        return "not a public address"
    return None


def address_refusal(address: str | IPAddress) -> str | None:
    """Why metre refuses to connect to `address` by default, or None for a public address.

    An IPv6 form that embeds an IPv4 address (`embedded_ipv4`) is judged by what it embeds:
    refused when any embedded address is refused, whatever Python thinks of the IPv6 form
    (it calls ``64:ff9b::10.0.0.1`` global).
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        carried = embedded_ipv4(ip)
        for v4 in carried:
            reason = _range_refusal(v4)
            if reason is not None:
                return f"{reason}, embedded IPv4 {v4}"
        if carried and ip in _NAT64_LOCAL:
            return "local-use NAT64 (64:ff9b:1::/48)"
        if carried:
            return None
    return _range_refusal(ip)


def check_addresses(host: str, addresses: Sequence[str], policy: UrlPolicy) -> str:
    """The address to connect to (the first); raises unless every address is acceptable.

    Checking all of them matters: a name that resolves to one public and one private address
    must not be fetched from whichever the connection happens to pick.
    """
    if not addresses:
        raise _refuse(f"host {host!r} does not resolve")
    checked = []
    for raw in addresses:
        try:
            ip = ipaddress.ip_address(raw.split("%", 1)[0])
        except ValueError:
            raise _refuse(f"host {host!r} resolves to an invalid address") from None
        reason = address_refusal(ip)
        if reason is not None and not policy.allow_private_hosts:
            raise _refuse(
                f"host {host!r} resolves to {ip} ({reason}); such hosts are refused unless "
                "METRE_ALLOW_PRIVATE_HOSTS=true"
            )
        checked.append(str(ip))
    return checked[0]


def pinned_address(remote: Remote, policy: UrlPolicy, resolve: Resolver) -> str:
    """Resolve `remote`'s host once and return the checked address the fetch must use."""
    if remote.host is None or remote.port is None:
        raise ValueError("a local path has no address")
    try:
        literal = ipaddress.ip_address(remote.host)
    except ValueError:
        pass
    else:  # an IP literal: nothing to resolve
        return check_addresses(remote.host, [str(literal)], policy)
    try:
        addresses = resolve(remote.host, remote.port)
    except ConnectTimedOut:  # the fetch's deadline, named by the fetch (not "does not resolve")
        raise
    except (OSError, UnicodeError):
        raise _refuse(f"host {remote.host!r} does not resolve") from None
    return check_addresses(remote.host, addresses, policy)
