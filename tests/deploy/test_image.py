"""The container image without a Docker engine: hadolint on the Dockerfile, its structure read
back (stages, user, entry point, ports, what it copies), and its build stage replayed with the
project's own install steps (deploy/image_check.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from deploy.image_check import dockerignore, ignored, instructions, stages
from metre import kernels
from tests.deploy.manifests import ROOT, tool

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = DOCKERFILE.replace("USER 10001:10001", "USER root").replace("--no-install-recommends", "")
    path = tmp_path / "Dockerfile"
    path.write_text(bad)
    result = subprocess.run(
        [tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DL3002" in result.stdout  # last user is root
    assert "DL3015" in result.stdout  # apt-get without --no-install-recommends


def test_two_stages_the_last_runs_as_an_unprivileged_user_with_metre_as_entry_point() -> None:
    build, runtime = stages(DOCKERFILE)
    assert build.name == "build"
    assert runtime.name == "runtime"
    assert build.base == runtime.base == "python:3.11-slim-bookworm"
    final = dict(runtime.instructions)  # the last of each keyword
    assert final["USER"].split(":")[0] not in ("0", "root")
    assert final["ENTRYPOINT"] == '["metre"]'
    assert set(final["EXPOSE"].split()) == {"8000", "8081"}
    copied = [rest for keyword, rest in runtime.instructions if keyword == "COPY"]
    assert copied == ["--from=build /opt/metre /opt/metre"]  # no compiler, no sources
    assert "METRE_DATA_DIR=/var/lib/metre" in final["ENV"]


def test_the_build_copies_every_package_pyproject_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    build = stages(DOCKERFILE)[0]
    sources = set()
    for keyword, rest in build.instructions:
        if keyword == "COPY":
            sources.update(rest.split()[:-1])
    assert packages <= sources
    assert {"pyproject.toml", "setup.py", "README.md", "LICENSE"} <= sources
    patterns = dockerignore(ROOT)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source, patterns), f"{source} is excluded by .dockerignore"
    # What stays out of the context: the virtual environment, tests, git, build products.
    for outside in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "kernels/_linediff.so"):
        assert ignored(outside, patterns), outside


def test_the_build_fails_when_a_kernel_is_not_compiled() -> None:
    runs = [rest for keyword, rest in instructions(DOCKERFILE) if keyword == "RUN"]
    check = next(r for r in runs if "IMPLEMENTATION" in r)
    # -P: the sources in WORKDIR /src would otherwise shadow the installed, compiled package.
    assert "/opt/metre/bin/python -P -c" in check
    assert "assert impl == {'c'}" in check
    # Every kernel's switch, so that a kernel added later is checked too.
    switches = {f"k.{name}" for name in kernels.__all__ if name.endswith("IMPLEMENTATION")}
    assert "k.CODELINES_IMPLEMENTATION" in switches
    assert switches == set(re.findall(r"k\.\w*IMPLEMENTATION", check))


@pytest.mark.slow
def test_the_build_stage_replays_and_every_role_starts() -> None:
    """deploy/image_check.py: the build stage's own RUN steps in a temporary directory, then
    `metre <role> --help` for every role, the compiled kernels and the package data."""
    result = subprocess.run(
        [sys.executable, "-P", str(ROOT / "deploy" / "image_check.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "image-check: ok" in result.stdout
    for role in ("up", "poller", "processor", "api"):
        assert f"metre {role} --help: ok" in result.stdout
