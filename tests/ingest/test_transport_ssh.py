"""The ssh transport end to end: metre's own ``ssh`` command line against a real OpenSSH
server (tests/fixtures/sshd.py), mirroring the git:// tests of test_transports.py.

127.0.0.1 is the good server; 127.0.0.2 (also loopback on Linux) runs a second sshd on the
same port with the same host key and the same authorized client key, serving another
repository: a fetch that followed a second resolution there would succeed, with other
commits. The name ends in ``.test`` and exists in no DNS: a fetch can only work through the
address metre checked.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from metre.ingest.credentials import Credential
from metre.ingest.git.errors import RepositoryError
from metre.ingest.mirror import FetchAccess, open_mirror, resolve_head
from metre.ingest.urlpolicy import UrlPolicy
from testkit.broker import free_port
from testkit.sshd import Sshd
from tests.fixtures.counting import Counting
from tests.fixtures.gitrepo import GitRepoBuilder
from tests.fixtures.sshd import SSH_ALIAS, SshClient, SshServers
from tests.ingest.test_transports import Resolver

SSH_PRIVATE = UrlPolicy(frozenset({"ssh"}), allow_private_hosts=True)
SSH_DEFAULT = UrlPolicy(frozenset({"ssh"}))


def _repo(path: Path) -> GitRepoBuilder:
    b = GitRepoBuilder(path)
    b.write("a.txt", b"good\n")
    b.commit("good", date="2021-01-01T00:00:00+0000")
    return b


def _url(sshd: SshServers, path: Path) -> str:
    return f"ssh://{sshd.user}@{SSH_ALIAS}:{sshd.port}{path}"


def _shown(url: str) -> str:
    """`url` as errors show it: without the user part."""
    return url.replace(url[6 : url.index("@") + 1], "")


def test_ssh_fetch_and_update(sshd: SshServers, ssh_client: SshClient, tmp_path: Path) -> None:
    mark = sshd.good.mark()
    good = _repo(tmp_path / "r.git")
    resolve = Resolver(["127.0.0.1"])
    access = FetchAccess(SSH_PRIVATE, resolve=resolve)
    url = _url(sshd, good.path)
    mirror = open_mirror(tmp_path / "m", 1, url, access)
    assert resolve_head(mirror, None) == good.head()
    good.write("b.txt", b"two\n")
    second = good.commit("second", date="2021-01-02T00:00:00+0000")
    mirror = open_mirror(tmp_path / "m", 1, url, access)  # incremental: the mirror has the rest
    assert resolve_head(mirror, None) == second
    assert resolve.calls == [SSH_ALIAS, SSH_ALIAS]  # once per fetch
    calls = ssh_client.calls()
    assert len(calls) == 2
    for argv in calls:  # metre's command line, as ssh received it
        assert argv[:4] == ["-o", f"HostKeyAlias={SSH_ALIAS}", "-o", "BatchMode=yes"]
        assert argv[-2] == f"{sshd.user}@127.0.0.1"  # the IP literal, never the name
        assert argv[argv.index("-p") + 1] == str(sshd.port)
        assert argv[-1].startswith("git-upload-pack ")
        assert str(good.path) in argv[-1]
        assert not any(SSH_ALIAS in a for a in argv if not a.startswith("HostKeyAlias="))
    log = sshd.good.log(mark)
    assert log.count(f"Accepted publickey for {sshd.user} from 127.0.0.1 ") == 2


def test_ssh_refused_address_is_never_contacted(
    sshd: SshServers, ssh_client: SshClient, tmp_path: Path
) -> None:
    """Both addresses listen on the URL's port, counting what they accept: the refusals come
    before any connection."""
    port = free_port()
    listeners = [Counting("127.0.0.1", port), Counting("127.0.0.2", port)]
    try:
        _refused_before_any_connection(sshd, ssh_client, tmp_path, port)
        assert [c.accepted() for c in listeners] == [0, 0]
    finally:
        for c in listeners:
            c.close()


def _refused_before_any_connection(
    sshd: SshServers, ssh_client: SshClient, tmp_path: Path, port: int
) -> None:
    url = f"ssh://{sshd.user}@{SSH_ALIAS}:{port}{_repo(tmp_path / 'r.git').path}"
    # a refused address first (link-local metadata), then one the server listens on
    access = FetchAccess(SSH_DEFAULT, resolve=Resolver(["169.254.169.254", "127.0.0.1"]))
    with pytest.raises(RepositoryError, match=r"169\.254\.169\.254 \(link-local\)") as err:
        open_mirror(tmp_path / "m", 1, url, access)
    assert str(err.value).startswith(f"cannot fetch {_shown(url)}: host ")
    # and loopback itself is refused by default
    with pytest.raises(RepositoryError, match=r"127\.0\.0\.1 \(loopback\).*ALLOW_PRIVATE"):
        open_mirror(
            tmp_path / "m", 1, url, FetchAccess(SSH_DEFAULT, resolve=Resolver(["127.0.0.1"]))
        )
    assert ssh_client.calls() == []  # ssh was never run


def test_ssh_resolution_that_changes_is_not_followed(
    sshd: SshServers, ssh_client: SshClient, tmp_path: Path
) -> None:
    """Checked once as 127.0.0.1; any later lookup would answer 127.0.0.2, whose sshd has the
    same host key and accepts the same client key but serves another repository (DNS
    rebinding). The fetch goes to the checked address."""
    marks = sshd.good.mark(), sshd.evil.mark()
    good = _repo(tmp_path / "r.git")
    resolve = Resolver(["127.0.0.1"], ["127.0.0.2"])
    mirror = open_mirror(
        tmp_path / "m", 1, _url(sshd, good.path), FetchAccess(SSH_PRIVATE, resolve=resolve)
    )
    assert resolve_head(mirror, None) == good.head() != sshd.evil_repo.head()
    assert resolve.calls == [SSH_ALIAS]  # resolved once
    assert f"Accepted publickey for {sshd.user} from 127.0.0.1 " in sshd.good.log(marks[0])
    assert _connections_since(sshd.evil, marks[1], ("127.0.0.2", sshd.port)) == []


def _connections_since(server: Sshd, mark: int, address: tuple[str, int]) -> list[str]:
    """The "Connection from" lines `server` logged since `mark`, once it has logged a probe
    connection made now: it accepts in order, so an earlier connection is in the log first
    (a wait for that line, not for a time)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        mine = f"Connection from 127.0.0.1 port {probe.getsockname()[1]} "
        probe.connect(address)
        deadline = time.monotonic() + 10
        while mine not in server.log(mark):
            assert time.monotonic() < deadline, "the server did not log the probe connection"
            time.sleep(0.02)
    lines = server.log(mark).splitlines()
    return [line for line in lines if "Connection from" in line and mine not in line]


def test_the_evil_server_would_serve_a_fetch(
    sshd: SshServers, ssh_client: SshClient, tmp_path: Path
) -> None:
    """The control for the test above: a fetch that does go to 127.0.0.2 succeeds there, so
    only the pinning keeps the previous fetch away from it."""
    mark = sshd.evil.mark()
    access = FetchAccess(SSH_PRIVATE, resolve=Resolver(["127.0.0.2"]))
    mirror = open_mirror(tmp_path / "m", 1, _url(sshd, tmp_path / "any.git"), access)
    assert resolve_head(mirror, None) == sshd.evil_repo.head()
    log = sshd.evil.log(mark)
    assert f" on 127.0.0.2 port {sshd.port} " in log
    assert f"Accepted publickey for {sshd.user} " in log


def test_ssh_host_key_mismatch_is_a_clear_error(
    sshd: SshServers, ssh_client: SshClient, tmp_path: Path
) -> None:
    """known_hosts holds another key for the name: ssh refuses before authenticating."""
    other = tmp_path / "other_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
        check=True,
        capture_output=True,
    )
    kind, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    ssh_client.known_hosts.write_text(f"{SSH_ALIAS} {kind} {key}\n")
    mark = sshd.good.mark()
    url = _url(sshd, _repo(tmp_path / "r.git").path)
    access = FetchAccess(SSH_PRIVATE, resolve=Resolver(["127.0.0.1"]))
    with pytest.raises(RepositoryError) as err:
        open_mirror(tmp_path / "m", 1, url, access)
    message = str(err.value)
    assert message.startswith(f"cannot fetch {_shown(url)}: ")
    assert "Host key verification failed" in message
    assert "\n" not in message
    assert len(message) < 500
    time.sleep(0.2)
    log = sshd.good.log(mark)
    assert "Connection from 127.0.0.1 " in log
    assert "Accepted publickey" not in log


def test_ssh_unknown_repository_is_a_clear_error(
    sshd: SshServers, ssh_client: SshClient, tmp_path: Path
) -> None:
    url = _url(sshd, tmp_path / "nope.git")
    access = FetchAccess(SSH_PRIVATE, resolve=Resolver(["127.0.0.1"]))
    with pytest.raises(RepositoryError, match="cannot fetch") as err:
        open_mirror(tmp_path / "m", 1, url, access)
    message = str(err.value)
    assert "does not appear to be a git repository" in message
    assert "Traceback" not in message
    assert "\n" not in message
    assert len(message) < 500


def test_ssh_never_uses_the_credentials_file(
    sshd: SshServers, ssh_client: SshClient, tmp_path: Path
) -> None:
    """A credential configured for the host is http(s) only: it reaches neither ssh's command
    line nor the server, nor the error of a failed fetch."""
    secret = "s3cret-token-for-ssh"
    credentials = {
        f"{SSH_ALIAS}:{sshd.port}": Credential("metre-bot", secret),
        SSH_ALIAS: Credential("metre-bot", secret),
    }
    mark = sshd.good.mark()
    access = FetchAccess(SSH_PRIVATE, credentials, Resolver(["127.0.0.1"]))
    with pytest.raises(RepositoryError) as err:
        open_mirror(tmp_path / "m", 1, _url(sshd, tmp_path / "nope.git"), access)
    good = _repo(tmp_path / "r.git")
    open_mirror(tmp_path / "m", 1, _url(sshd, good.path), access)
    seen = str(err.value) + repr(ssh_client.calls()) + sshd.good.log(mark)
    assert secret not in seen
    assert "metre-bot" not in seen


def _close_masters(control: Path) -> None:
    """End the connections a test left open (they would otherwise persist for their time)."""
    for sock in control.iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "unused"],
            capture_output=True,
            check=False,
        )


def test_ssh_connection_is_reused_by_the_next_fetch_of_that_name_only(
    sshd: SshServers, ssh_client: SshClient, tmp_path: Path
) -> None:
    """With `SshReuse`, a second fetch rides on the first one's connection (the server logs
    one authentication); another host name at the same address gets a connection of its own,
    so its host key is checked (and here refused: known_hosts holds only `SSH_ALIAS`)."""
    import tempfile

    from metre.ingest.transport import SshReuse

    control = Path(tempfile.mkdtemp(prefix="metre-ssh-", dir="/tmp")) / "c"
    reuse = SshReuse(control, 30)
    good = _repo(tmp_path / "r.git")
    mark = sshd.good.mark()
    access = FetchAccess(SSH_PRIVATE, resolve=Resolver(["127.0.0.1"]), ssh_reuse=reuse)
    try:
        open_mirror(tmp_path / "m", 1, _url(sshd, good.path), access)
        good.write("b.txt", b"two\n")
        second = good.commit("second", date="2021-01-02T00:00:00+0000")
        mirror = open_mirror(tmp_path / "m", 1, _url(sshd, good.path), access)
        assert resolve_head(mirror, None) == second
        log = sshd.good.log(mark)
        assert log.count(f"Accepted publickey for {sshd.user} from 127.0.0.1 ") == 1, log
        assert control.stat().st_mode & 0o777 == 0o700
        assert len(list(control.iterdir())) == 1
        other = f"ssh://{sshd.user}@other.metre.test:{sshd.port}{good.path}"
        with pytest.raises(RepositoryError, match="cannot fetch"):
            open_mirror(tmp_path / "m2", 2, other, access)
        assert len(list(control.iterdir())) <= 2
    finally:
        _close_masters(control)


def test_ssh_reuse_is_off_when_the_socket_path_would_be_too_long(tmp_path: Path) -> None:
    from metre.ingest.transport import SshReuse

    deep = SshReuse(tmp_path / ("d" * 120), 30)
    assert deep.options("h", "127.0.0.1", 22, "git") == []
    short = SshReuse(Path("/tmp/metre-ssh-test-short"), 30)
    opts = short.options("h", "127.0.0.1", 22, "git")
    assert "ControlMaster=auto" in opts
    assert opts != short.options("other", "127.0.0.1", 22, "git")
