"""Session fixtures live in tests/fixtures/*: each starts a real server once per session.

Every test runs under the connect guard (tests/netguard.py): a connection to anything but
loopback or a unix socket is refused and fails the test.
"""

from collections.abc import Iterator

import pytest

from tests import netguard

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.broker",
    "tests.fixtures.gitrepo",
    "tests.fixtures.sshd",
]

netguard.install()


@pytest.fixture(autouse=True)
def _connect_guard() -> Iterator[None]:
    """Fail the test if it (or a thread it started) tried to connect off this machine."""
    netguard.take_violations()  # anything left by session fixtures is theirs, not this test's
    yield
    refused = netguard.take_violations()
    if refused:
        pytest.fail(
            "the test tried to connect off this machine (refused by the connect guard): "
            + ", ".join(refused),
            pytrace=False,
        )
