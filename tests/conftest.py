"""Session fixtures live in tests/fixtures/*: each starts a real server once per session.

Every test runs under the connect guard (tests/netguard.py): a connection to anything but
loopback or a unix socket is refused and fails the test.

A test that uses a server fixture, directly or through another fixture, is marked
`integration` by what it uses (`pytest_collection_modifyitems`), so `-m "not integration"`
runs exactly the tests that need no server, and starts none.

`make test` runs the suite in parallel (pytest-xdist, one worker per core): each worker is a
session of its own, with its own servers. Tests marked `first` (the chaos run, about a
fifth of the suite's time in one test) are collected first, so that one worker starts them
while the others share the rest, instead of one running them alone at the end.

Hypothesis runs without its speed checks (no deadline, no "input generation is slow"): they
measure the machine, which CI shares, not the property; every example still runs.
"""

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests import netguard

settings.register_profile("metre", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("metre")

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.broker",
    "tests.fixtures.gitrepo",
    "tests.fixtures.sshd",
]

netguard.install()

SERVER_FIXTURES = frozenset(
    {"pg_dsn", "kafka_broker", "sshd"}  # every other server fixture is built on one of these
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
    # Stable: the rest keep their order (each module's fixtures set up once).
    items.sort(key=lambda item: item.get_closest_marker("first") is None)


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
