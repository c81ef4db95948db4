"""Long API fuzzing run: schemathesis (its CLI) over the app's own OpenAPI document, against metre
served as `metre up` serves it (metre.api.server's uvicorn) over an embedded PostgreSQL.

Usage: ``python -m bench.fuzz [cases-per-operation] [workers] [schemathesis options...]`` from
the repository root (defaults 700 and 2: about 23,000 cases over the API's 29 operations, from
every phase: examples, coverage, fuzzing, stateful). Not part of the test suite;
tests/api/test_fuzz.py is the short run CI does.

A small repository is built with the git CLI (files with odd names, a commit dated 9999-12-31)
and ingested through the real pipeline; half the generated repository ids are its id, so that
the metric queries behind every parameter are reached. Name resolution is replaced (every
host resolves to a documentation address, and nothing is fetched: no poller runs), and local
paths are refused, so registering repositories writes rows and nothing else. Every check
schemathesis has runs except positive_data_acceptance and negative_data_rejection (see
tests/api/test_fuzz.py for why). The run prints the machine, the load before and after,
schemathesis' own summary, then the count of test cases, of failed checks and of responses
by status from its event stream; the exit status is schemathesis' own (0: no failure).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

import metre.ingest.mirror
import metre.ingest.repourls
from bench.api import free_port, load, machine
from bench.api import ingest as ingest_repo
from metre.api.app import create_app
from metre.api.server import server_config
from metre.pg import start_embedded, stop_embedded
from metre.processors.store import PgStore
from metre.serving import QuietServer
from metre.settings import Settings

EXCLUDED = "positive_data_acceptance,negative_data_rejection"
SEEDED = """
[dictionaries.seeded]
values = [{repo_id}]

[parameters]
"path.repo_id" = {{ dictionary = "seeded", probability = 0.5 }}
"""
"""Half the generated repository ids are the seeded repository's: a random id is a 404 before
any metric parameter is read, so without it the queries behind the parameters go untested."""


def _resolve(host: str, port: int) -> Sequence[str]:
    if host.endswith((".invalid", ".test")) or "." not in host:
        raise OSError(f"{host} does not resolve")
    return ["192.0.2.1"]  # TEST-NET-1: nothing connects to it (no poller runs)


def _git(repo: Path, *args: str, stdin: bytes | None = None, date: str | None = None) -> bytes:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(repo.parent),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Fuzz",
        "GIT_AUTHOR_EMAIL": "fuzz@example.com",
        "GIT_COMMITTER_NAME": "Fuzz",
        "GIT_COMMITTER_EMAIL": "fuzz@example.com",
        "GIT_AUTHOR_DATE": date or "2020-01-01T10:00:00+0000",
        "GIT_COMMITTER_DATE": date or "2020-01-01T10:00:00+0000",
    }
    return subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=repo,
        env=env,
        input=stdin,
        capture_output=True,
        check=True,
    ).stdout


def build_repo(repo: Path) -> Path:
    """A few commits over odd file names, the last dated 9999-12-31 (written by hand: git
    commit refuses that date)."""
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", ".")
    for i, name in enumerate(["a.txt", "dir/b.py", "caf\u00e9.md", "sp ace.txt", "a.txt"]):
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"line {i}\n" * (i + 1))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"commit {i}", date=f"2021-0{i + 1}-01T12:00:00+0200")
    (repo / "z.txt").write_text("the end\n")
    _git(repo, "add", "-A")
    tree = _git(repo, "write-tree").decode().strip()
    head = _git(repo, "rev-parse", "HEAD").decode().strip()
    who = "Fuzz <fuzz@example.com> 253402214400 +0000"
    body = f"tree {tree}\nparent {head}\nauthor {who}\ncommitter {who}\n\nlast day\n".encode()
    sha = _git(repo, "hash-object", "-t", "commit", "-w", "--stdin", stdin=body).decode().strip()
    _git(repo, "update-ref", "HEAD", sha)
    return repo


def summary(report: Path) -> tuple[int, int, Counter[int]]:
    """(test cases, failed checks, responses by status) from schemathesis' ndjson events."""
    cases = failures = 0
    statuses: Counter[int] = Counter()
    for line in report.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished:
            recorder = finished.get("recorder", {})
            cases += len(recorder.get("cases", {}))
            for checks in recorder.get("checks", {}).values():
                failures += sum(1 for c in checks if c.get("status") == "FAILURE")
            for interaction in recorder.get("interactions", {}).values():
                response = interaction.get("response") or {}
                if "status_code" in response:
                    statuses[response["status_code"]] += 1
    return cases, failures, statuses


async def main(per_operation: int, workers: int, extra: Sequence[str] = ()) -> int:
    root = Path(tempfile.mkdtemp(prefix="metre-fuzz-"))
    dsn = await asyncio.to_thread(start_embedded, root / "pg")
    store = await PgStore.connect(dsn)
    metre.ingest.repourls.system_resolve = _resolve  # type: ignore[assignment]
    try:
        print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(f"machine: {machine()}")
        await store.migrate()
        repo = build_repo(root / "repo")
        repo_id, commits, _ = await ingest_repo(store, repo, root)
        print(f"seeded repository {repo_id} ({commits} commits, the last dated 9999-12-31)")
        settings = Settings(
            data_dir=root,
            database_url=SecretStr(dsn),
            allow_local_paths=False,
            rate_limit=0,
        )
        port = free_port()
        config = server_config(
            create_app(settings, store), host="127.0.0.1", port=port, log_level="critical"
        )
        server = QuietServer(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        report = root / "events.ndjson"
        config_file = root / "schemathesis.toml"
        config_file.write_text(SEEDED.format(repo_id=repo_id))
        argv = [
            str(Path(sys.executable).with_name("schemathesis")),
            "--config-file",
            str(config_file),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--max-examples",
            str(per_operation),
            "--workers",
            str(workers),
            "--checks",
            "all",
            "--exclude-checks",
            EXCLUDED,
            "--seed",
            "1",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "30",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            "--continue-on-failure",
            *extra,
        ]
        print(f"before: {load()}")
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*argv, cwd=root)  # its cache stays there
        code = await proc.wait()
        seconds = time.perf_counter() - t0
        print(f"after: {load()}")
        server.should_exit = True
        await serving
        cases, failures, statuses = summary(report)
        print(f"schemathesis: {cases} test cases in {seconds:.0f} s, {failures} failed checks")
        print("responses by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
        return code
    finally:
        await store.close()
        await asyncio.to_thread(stop_embedded, root / "pg")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 700
    w = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    sys.exit(asyncio.run(main(n, w, sys.argv[3:])))
