"""Load test of the API: Locust (bench/locustfile.py) headless against `metre up` seeded with
real histories, then against a hello-world FastAPI on the same uvicorn, in the same run (I/O).

Run: pip install -e '.[bench]'; nice -n 10 python -P bench/loadtest.py [--users 20]
     [--seconds 30] [--history PATH ...]

Seeds: a bare clone of this repository's own history (or each --history given), and a
generated 3,000-commit history, registered with `metre add --wait`; five tiny generated
repositories are the registrations the users post. Both targets get the same number of
users, the same spawn rate and duration, from one Locust process on the same machine, so the
ratio says what metre costs over a minimal FastAPI answer. Prints requests/s, p50 and p99 for
both, and per request name for metre.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent


def _load() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return out.split("load average:")[-1].strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(url: str, within: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"loadtest: {url} did not answer in {within} s")


def _locust(
    user: str, host: str, users: int, seconds: int, prefix: Path, env: dict[str, str]
) -> list[dict[str, str]]:
    command = [
        str(BIN / "locust"), "-f", str(ROOT / "bench" / "locustfile.py"), user, "--headless",
        "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds}s",
        "--host", host, "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    subprocess.run(command, check=False, env={**os.environ, **env}, capture_output=True)
    with Path(f"{prefix}_stats.csv").open() as f:
        return list(csv.DictReader(f))


def _row(rows: list[dict[str, str]], name: str = "Aggregated") -> dict[str, str]:
    return next(r for r in rows if r["Name"] == name)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--seconds", type=int, default=30)
    p.add_argument("--history", type=Path, action="append", help="a git repository to seed")
    args = p.parse_args()
    from testkit.histories import generate_history

    root = Path(tempfile.mkdtemp(prefix="metre-loadtest-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        seeds = []
        for i, source in enumerate(args.history or [ROOT]):
            clone = root / f"seed{i}.git"
            subprocess.run(["git", "clone", "-q", "--bare", str(source), str(clone)], check=True)
            seeds.append(clone)
        seeds.append(generate_history(root / "generated", commits=3000, seed=3))
        register = [str(generate_history(root / f"new{i}", commits=50, seed=10 + i))
                    for i in range(5)]  # fmt: skip

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "METRE_DATA_DIR": str(root / "data"), "METRE_LOG_LEVEL": "WARNING"}
        up = [str(BIN / "metre"), "up", "--port", str(port)]
        quiet = subprocess.DEVNULL
        procs.append(subprocess.Popen(up, env=env, stdout=quiet, stderr=quiet))
        _wait_for(f"{url}/readyz")
        ids = []
        commits = 0
        for seed in seeds:
            out = subprocess.run(
                [str(BIN / "metre"), "add", str(seed), "--wait", "--api", url],
                check=True, capture_output=True, text=True, env=env,
            ).stdout  # fmt: skip
            ids.append(out.split("registered repository ")[1].split(":")[0])
        import httpx

        for repo in httpx.get(f"{url}/api/v1/repos").json()["repos"]:
            commits += repo["commits"]
        print(f"# API load test, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")  # fmt: skip
        print(f"metre up seeded with {len(ids)} repositories, {commits:,} commits; "
              f"{args.users} users, {args.seconds} s each; load {_load()}")  # fmt: skip
        locust_env = {
            "METRE_LOCUST_REPOS": ",".join(ids),
            "METRE_LOCUST_REGISTER": ",".join(register),
        }
        metre = _locust("MetreUser", url, args.users, args.seconds, root / "metre", locust_env)
        load_metre = _load()

        hello_port = _free_port()
        hello = (
            "import uvicorn\nfrom fastapi import FastAPI\napp = FastAPI()\n"
            "@app.get('/hello')\nasync def hello():\n    return {'hello': 'world'}\n"
            f"uvicorn.run(app, host='127.0.0.1', port={hello_port}, log_level='warning', "
            "access_log=False, loop='uvloop', http='httptools')\n"
        )
        procs.append(subprocess.Popen([sys.executable, "-c", hello]))
        _wait_for(f"http://127.0.0.1:{hello_port}/hello")
        ref = _locust("HelloUser", f"http://127.0.0.1:{hello_port}", args.users, args.seconds,
                      root / "hello", {})  # fmt: skip
        load_hello = _load()

        m, h = _row(metre), _row(ref)
        print("\n| target | requests | failures | requests/s | p50 ms | p99 ms | load after |")
        print("|---|---|---|---|---|---|---|")
        for label, r, load in (("metre (mix)", m, load_metre), ("hello-world", h, load_hello)):
            rate = float(r["Requests/s"])
            print(f"| {label} | {int(r['Request Count']):,} | {r['Failure Count']} | "
                  f"{rate:,.0f} | {r['50%']} | {r['99%']} | {load} |")  # fmt: skip
        ratio = float(m["Requests/s"]) / float(h["Requests/s"])
        print(f"\nmetre / hello-world: requests/s {ratio:.2f}"
              f", p50 {float(m['50%']) / max(float(h['50%']), 1):.1f}x, "
              f"p99 {float(m['99%']) / max(float(h['99%']), 1):.1f}x")  # fmt: skip
        print("\n| metre request | count | failures | p50 ms | p99 ms |")
        print("|---|---|---|---|---|")
        for r in sorted(metre, key=lambda r: -int(r["Request Count"])):
            if r["Name"] != "Aggregated":
                print(f"| {r['Type']} {r['Name']} | {int(r['Request Count']):,} | "
                      f"{r['Failure Count']} | {r['50%']} | {r['99%']} |")  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
