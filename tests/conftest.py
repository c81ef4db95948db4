"""Session fixtures live in tests/fixtures/*: each starts a real server once per session."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.broker",
    "tests.fixtures.gitrepo",
    "tests.fixtures.sshd",
]
