"""Huge inputs at full size: time and peak memory of metre's events, and equality with git.

Run: python -P bench/huge.py [case ...]   cases: wide (50,000 files, every one edited),
fat (a 200 MB blob, edited in its middle, then in many places), line (a file of one 10 MB
line, edited). Each case runs in its own process so that its peak RSS is its own; git's time
for `git log --numstat --no-renames --minimal` on the same repository is printed beside it.
tests/ingest/test_huge.py runs scaled-down versions; tests/ingest/test_hostile.py has a
100,000-file root commit and a 50 MB blob.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CASES = {"wide": 50_000, "fat": 200, "line": 10}


def run_case(name: str, root: Path) -> dict[str, object]:
    from dulwich.repo import Repo

    from metre.ingest.commits import commit_event
    from metre.ingest.git.graph import new_commits
    from metre.ingest.mirror import resolve_head
    from testkit.gitlog import git_numstat
    from testkit.huge import fat, long_line, wide

    build = {"wide": wide, "fat": fat, "line": long_line}[name]
    started = time.perf_counter()
    repo_dir = build(root / name, CASES[name])
    built = time.perf_counter() - started
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    events = []
    with Repo(str(repo_dir)) as repo:
        for sha in new_commits(repo, resolve_head(repo_dir / ".git", None), None):
            events.append(commit_event(repo, 1, sha))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    expected = git_numstat(repo_dir)
    git_seconds = time.perf_counter() - started
    equal = all(
        sorted(
            (f.path.encode(), None if f.binary else f.added, None if f.binary else f.removed)
            for f in e.files
        )
        == sorted(expected[e.sha])
        for e in events
    )
    return {
        "case": name,
        "size": CASES[name],
        "build": built,
        "seconds": seconds,
        "git": git_seconds,
        "peak": peak,
        "before": base,
        "equal": equal,
        "files": [len(e.files) for e in events],
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_case(sys.argv[2], Path(tmp))))
        return
    print(f"cores {os.cpu_count()}, load {os.getloadavg()}")
    for name in sys.argv[1:] or list(CASES):
        out = subprocess.run(
            [sys.executable, "-P", __file__, "--case", name], capture_output=True, text=True
        )
        if out.returncode:
            print(f"{name}: FAILED\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['case']:<5} size {r['size']}: metre {r['seconds']:.2f} s, git {r['git']:.2f} s "
            f"(ratio {r['seconds'] / r['git']:.2f}), peak RSS {r['peak']:.0f} MB "
            f"(before the walk {r['before']:.0f} MB), files per commit {r['files']}, "
            f"{'equal to git' if r['equal'] else 'DIFFERENT FROM GIT'}; load {os.getloadavg()}"
        )


if __name__ == "__main__":
    main()
