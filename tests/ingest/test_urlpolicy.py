"""metre.ingest.urlpolicy: the pure URL and address policy (resolver injected, no network)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from metre.ingest.credentials import Credential, CredentialsError, credential_for, parse_credentials
from metre.ingest.urlpolicy import (
    InvalidRepositoryURL,
    Remote,
    UrlPolicy,
    address_refusal,
    check_addresses,
    parse_remote,
    pinned_address,
)

DEFAULT = UrlPolicy()
EVERYTHING = UrlPolicy(frozenset({"https", "http", "ssh", "git"}), allow_local_paths=True)


class resolver:
    """A fake resolver over a fixed table that records the names it was asked for."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError("no such host")
        return self.table[host]


@pytest.mark.parametrize(
    ("url", "policy", "message"),
    [
        ("http://example.org/x.git", DEFAULT, "unsupported URL scheme 'http'"),
        ("ssh://git@example.org/x.git", DEFAULT, "unsupported URL scheme 'ssh'"),
        ("git@example.org:x/y.git", DEFAULT, "unsupported URL scheme 'ssh'"),
        ("git://example.org/x.git", DEFAULT, "unsupported URL scheme 'git'"),
        ("ftp://example.org/x.git", EVERYTHING, "unsupported URL scheme 'ftp'"),
        ("file:///srv/x.git", DEFAULT, "local paths are not accepted"),
        ("/srv/x.git", DEFAULT, "local paths are not accepted"),
        ("ext::sh -c touch% /tmp/pwned", EVERYTHING, "transport helpers"),
        ("fd::3", EVERYTHING, "transport helpers"),
        ("remote-helper::https://example.org/x", EVERYTHING, "transport helpers"),
        ("-oProxyCommand=touch /tmp/x", EVERYTHING, "cannot start with '-'"),
        ("ssh://-oProxyCommand=x/y", EVERYTHING, "cannot start with '-'"),
        ("-oProxyCommand=x:y", EVERYTHING, "cannot start with '-'"),
        ("https://user:secret@example.org/x.git", DEFAULT, "credentials"),
        ("https://secret@example.org/x.git", DEFAULT, "credentials"),
        ("ssh://git:secret@example.org/x.git", EVERYTHING, "credentials"),
        ("https://example.org/x\x00.git", DEFAULT, "control characters"),
        ("https://example.org/x\r\nHost: evil", DEFAULT, "control characters"),
        ("https://exa mple.org/x", DEFAULT, "control characters"),
        ("https://example.org:99999/x", DEFAULT, "invalid port"),
        ("https://example.org:0/x", DEFAULT, "invalid port"),
        ("https:///x.git", DEFAULT, "no valid host"),
        ("https://exa$mple.org/x", DEFAULT, "no valid host"),
        ("relative/path", EVERYTHING, "relative paths"),
        ("file://elsewhere/x.git", EVERYTHING, "on this machine"),
    ],
)
def test_refused_urls(url: str, policy: UrlPolicy, message: str) -> None:
    with pytest.raises(InvalidRepositoryURL, match=message) as info:
        parse_remote(url, policy)
    assert "secret" not in str(info.value)


def test_accepted_urls_by_scheme() -> None:
    assert parse_remote("https://Example.org/a.git", DEFAULT) == Remote(
        "https", "https://example.org/a.git", host="example.org", port=443
    )
    assert parse_remote("http://example.org:8080/a", EVERYTHING).port == 8080
    assert parse_remote("git://example.org/a", EVERYTHING).port == 9418
    ssh = parse_remote("ssh://git@example.org:2222/a.git", EVERYTHING)
    assert (ssh.scheme, ssh.host, ssh.port, ssh.username) == ("ssh", "example.org", 2222, "git")
    scp = parse_remote("git@example.org:team/a.git", EVERYTHING)
    assert (scp.scheme, scp.host, scp.port, scp.username) == ("ssh", "example.org", 22, "git")
    assert parse_remote("https://[2001:db8::1]/a", DEFAULT).host == "2001:db8::1"
    assert parse_remote("https://bücher.example/a", DEFAULT).host == "xn--bcher-kva.example"
    assert parse_remote("/srv/x.git", EVERYTHING) == Remote("local", "/srv/x.git")
    assert parse_remote("file:///srv/x.git", EVERYTHING) == Remote("local", "/srv/x.git")


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("::10.0.0.1", "private"),  # IPv4-compatible
        ("192.0.2.1", "not a public address"),  # TEST-NET-1
        ("2001:db8::1", "not a public address"),  # documentation
    ],
)
def test_refused_addresses(address: str, reason: str) -> None:
    refusal = address_refusal(address)
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize("address", ["93.184.215.14", "140.82.121.3", "2606:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert address_refusal(address) is None


def test_every_address_is_checked() -> None:
    with pytest.raises(InvalidRepositoryURL, match=r"10\.0\.0\.5 \(private"):
        check_addresses("mixed.test", ["93.184.215.14", "10.0.0.5"], DEFAULT)
    assert check_addresses("ok.test", ["93.184.215.14", "2606:4700::1111"], DEFAULT) == (
        "93.184.215.14"
    )
    allowed = UrlPolicy(allow_private_hosts=True)
    assert check_addresses("mixed.test", ["10.0.0.5", "93.184.215.14"], allowed) == "10.0.0.5"
    with pytest.raises(InvalidRepositoryURL, match="does not resolve"):
        check_addresses("empty.test", [], DEFAULT)


def test_pinned_address_resolves_once_and_returns_the_checked_address() -> None:
    resolve = resolver({"git.example.test": ["93.184.215.14", "93.184.215.15"]})
    remote = parse_remote("https://git.example.test/a.git", DEFAULT)
    assert pinned_address(remote, DEFAULT, resolve) == "93.184.215.14"
    assert resolve.calls == ["git.example.test"]


@pytest.mark.parametrize(
    ("url", "table", "message"),
    [
        ("https://metadata.test/x", {"metadata.test": ["169.254.169.254"]}, "link-local"),
        ("https://localhost/x", {"localhost": ["127.0.0.1", "::1"]}, "loopback"),
        ("https://127.1/x", {"127.1": ["127.0.0.1"]}, "loopback"),  # short numeric form
        ("https://2130706433/x", {"2130706433": ["127.0.0.1"]}, "loopback"),
        ("https://[::1]/x", {}, "loopback"),
        ("https://169.254.169.254/latest/meta-data", {}, "link-local"),
        ("https://nowhere.invalid/x", {}, "does not resolve"),
        ("git://intranet.test/x", {"intranet.test": ["192.168.0.2"]}, "private"),
        ("git@intranet.test:x.git", {"intranet.test": ["100.64.1.1"]}, "CGNAT"),
    ],
)
def test_private_hosts_refused_unless_allowed(
    url: str, table: dict[str, Sequence[str]], message: str
) -> None:
    resolve = resolver(table)
    remote = parse_remote(url, EVERYTHING)
    with pytest.raises(InvalidRepositoryURL, match=message):
        pinned_address(remote, EVERYTHING, resolve)
    if message != "does not resolve":
        allowed = UrlPolicy(EVERYTHING.allowed_schemes, allow_private_hosts=True)
        assert pinned_address(remote, allowed, resolve)


def test_credential_lookup_prefers_the_longest_prefix_then_host() -> None:
    table = parse_credentials(
        {
            "git.example.test": {"username": "host", "token": "t-host"},
            "git.example.test:8443": {"username": "port", "password": "t-port"},
            "https://git.example.test/team/": {"username": "team", "token": "t-team"},
            "https://git.example.test/team/private": {"username": "deep", "token": "t-deep"},
        }
    )
    who = {
        url: (c.username if (c := credential_for(table, url)) else None)
        for url in (
            "https://git.example.test/team/private/x.git",
            "https://git.example.test/team/privateer/x.git",
            "https://git.example.test/team/x.git",
            "https://git.example.test/other.git",
            "https://GIT.example.test:8443/other.git",
            "https://else.example.test/x.git",
        )
    }
    assert who == {
        "https://git.example.test/team/private/x.git": "deep",
        "https://git.example.test/team/privateer/x.git": "team",
        "https://git.example.test/team/x.git": "team",
        "https://git.example.test/other.git": "host",
        "https://GIT.example.test:8443/other.git": "port",
        "https://else.example.test/x.git": None,
    }


def test_credentials_never_show_their_secret() -> None:
    cred = Credential("bot", "s3cr3t-token")
    assert "s3cr3t" not in repr(cred)
    assert "s3cr3t" not in str(cred)
    for bad, message in (
        ({"h": {"token": "s3cr3t"}}, "needs a username"),
        ({"h": {"username": "u"}}, "needs a token"),
        ({"h": "s3cr3t"}, "must be a table"),
        ({"h": {"username": "u", "token": "s3cr3t\n"}}, "control characters"),
    ):
        with pytest.raises(CredentialsError, match=message) as info:
            parse_credentials(bad)
        assert "s3cr3t" not in str(info.value)


# ----------------------------------------------------------------- IPv6 forms embedding IPv4


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("64:ff9b::10.0.0.1", "private (RFC 1918), embedded IPv4 10.0.0.1"),  # NAT64
        ("64:ff9b::7f00:1", "loopback, embedded IPv4 127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "link-local, embedded IPv4 169.254.169.254"),
        ("64:ff9b:1::a00:1", "embedded IPv4 10.0.0.1"),  # local-use NAT64, /96 reading
        ("64:ff9b:1:a00:1::", "embedded IPv4"),  # ... 10.0.1.0 at the /48 position (RFC 6052)
        ("64:ff9b:1::808:808", "embedded IPv4"),  # 8.8.8.8 at /96, but 0.0.0.8 at /64
        ("::ffff:0:127.0.0.1", "loopback, embedded IPv4 127.0.0.1"),  # IPv4-translated (SIIT)
        ("::ffff:0:a00:1", "private (RFC 1918), embedded IPv4 10.0.0.1"),
        ("::ffff:10.0.0.1", "embedded IPv4 10.0.0.1"),  # IPv4-mapped
        ("2002:7f00:1::1", "loopback, embedded IPv4 127.0.0.1"),  # 6to4
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "embedded IPv4 10.0.0.1"),  # Teredo client
        ("2001:0:a00:1::1", "embedded IPv4 10.0.0.1"),  # Teredo server
    ],
)
def test_ipv6_forms_are_judged_by_their_embedded_ipv4(address: str, reason: str) -> None:
    refusal = address_refusal(address)
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize("address", ["64:ff9b::8.8.8.8", "::ffff:0:8.8.8.8", "2002:808:808::1"])
def test_ipv6_forms_embedding_a_public_ipv4_pass(address: str) -> None:
    assert address_refusal(address) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://[64:ff9b::10.0.0.1]/r",
        "https://[64:ff9b:1::a00:1]/r",
        "https://[::ffff:0:127.0.0.1]/r",
    ],
)
def test_embedded_ipv4_literals_refused_at_registration(url: str) -> None:
    with pytest.raises(InvalidRepositoryURL, match="embedded IPv4") as info:
        pinned_address(parse_remote(url, DEFAULT), DEFAULT, resolver({}))
    assert "METRE_ALLOW_PRIVATE_HOSTS" in str(info.value)


def test_embedded_ipv4_in_dns_answers_refused() -> None:
    """At connect time too: a name whose AAAA answer is a NAT64 form of a private address."""
    resolve = resolver({"git.example.test": ["64:ff9b::a00:1"]})
    remote = parse_remote("https://git.example.test/r", DEFAULT)
    with pytest.raises(InvalidRepositoryURL, match=r"resolves to 64:ff9b::a00:1 .*10\.0\.0\.1"):
        pinned_address(remote, DEFAULT, resolve)


# ------------------------------------------------------------------------- canonical identity


@pytest.mark.parametrize(
    ("spellings", "canonical"),
    [
        (
            ["https://Git.Example.ORG/team/r", "https://git.example.org./team/r/",
             "https://git.example.org:443/team/r//"],
            "https://git.example.org/team/r",
        ),
        (["http://example.org:80/r", "http://EXAMPLE.org/r/"], "http://example.org/r"),
        (["http://example.org:8080/r/"], "http://example.org:8080/r"),
        (["git://example.org:9418/r", "git://example.org./r"], "git://example.org/r"),
        (["ssh://git@Example.org:22/r/", "ssh://git@example.org./r"], "ssh://git@example.org/r"),
        (["git@Example.org.:team/r/", "git@example.org:team/r"], "git@example.org:team/r"),
        (["https://[2001:DB8::1]:443/r"], "https://[2001:db8::1]/r"),
    ],
)  # fmt: skip
def test_one_spelling_per_remote(spellings: list[str], canonical: str) -> None:
    assert {parse_remote(u, EVERYTHING).url for u in spellings} == {canonical}


def test_fragments_refused() -> None:
    with pytest.raises(InvalidRepositoryURL, match="fragment"):
        parse_remote("https://example.org/r#main", DEFAULT)


# ------------------------------------------------------------------ messages name the setting


@pytest.mark.parametrize("url", ["javascript:alert(1)", "mailto:someone", "data:text/html,x"])
def test_uri_of_another_scheme_is_named_by_its_scheme(url: str) -> None:
    scheme = url.split(":", 1)[0]
    with pytest.raises(InvalidRepositoryURL, match=f"unsupported URL scheme '{scheme}'"):
        parse_remote(url, EVERYTHING)


def test_refused_local_path_names_the_setting() -> None:
    for url in ("/srv/x.git", "file:///srv/x.git"):
        with pytest.raises(InvalidRepositoryURL, match="METRE_ALLOW_LOCAL_PATHS"):
            parse_remote(url, DEFAULT)


def test_refused_scheme_names_the_setting() -> None:
    with pytest.raises(InvalidRepositoryURL, match="METRE_ALLOWED_SCHEMES"):
        parse_remote("git://example.org/r", DEFAULT)


def test_credentials_only_for_https_and_the_configured_origin() -> None:
    table = parse_credentials(
        {
            "git.example.test": {"username": "host", "token": "t-host"},
            "git.example.test:8443": {"username": "port", "token": "t-port"},
            "https://git.example.test/team/": {"username": "team", "token": "t-team"},
        }
    )
    who = {
        url: (c.username if (c := credential_for(table, url)) else None)
        for url in (
            "http://git.example.test/team/x.git",  # plain http: never
            "http://git.example.test:8443/x.git",
            "https://git.example.test:444/x.git",  # another port of the host
            "https://git.example.test:8443/team/x.git",  # a prefix names port 443 only
            "https://git.example.test./team/x.git",  # the same origin spelled with a dot
            "https://git.example.test:443/other.git",
        )
    }
    assert who == {
        "http://git.example.test/team/x.git": None,
        "http://git.example.test:8443/x.git": None,
        "https://git.example.test:444/x.git": None,
        "https://git.example.test:8443/team/x.git": "port",
        "https://git.example.test./team/x.git": "team",
        "https://git.example.test:443/other.git": "host",
    }


@pytest.mark.parametrize(
    ("key", "message"),
    [("http://git.example.test/", "https only"), ("ssh://git.example.test/", "https only"),
     ("git.example.test:99999", "not a host")],
)  # fmt: skip
def test_credential_keys_that_could_leak_are_refused(key: str, message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        parse_credentials({key: {"username": "u", "token": "t"}})
