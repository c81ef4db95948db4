"""An OpenSSH server on a loopback address for git over ssh (I/O): host and client keys made
with ssh-keygen, a configuration that accepts only public keys."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def sshd_config(base: Path, address: str, port: int, extra: str = "") -> Path:
    config = base / f"sshd_config-{address}"
    config.write_text(
        f"ListenAddress {address}\n"
        f"Port {port}\n"
        f"HostKey {base / 'host_key'}\n"
        f"PidFile {base / f'sshd-{address}.pid'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\n"
        "AuthenticationMethods publickey\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "AcceptEnv GIT_PROTOCOL\n"
        "LogLevel VERBOSE\n" + extra
    )
    return config


class Sshd:
    """One sshd; `log(mark)` is its -e output (LogLevel VERBOSE) after `mark()` was taken."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + 10
        # readiness from the log, not a probe connection: every connection is logged
        while "Server listening on" not in self.log():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"sshd did not start: {self.log()[-2000:]}")
            time.sleep(0.02)

    def mark(self) -> int:
        return self.log_path.stat().st_size

    def log(self, mark: int = 0) -> str:
        return self.log_path.read_bytes()[mark:].decode(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()
