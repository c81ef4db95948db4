"""Replay the Dockerfile's build stage without Docker, then check what the image would run.

    python deploy/image_check.py [--keep DIR]

The build stage's COPY instructions are replayed into a temporary context (with the
.dockerignore exclusions), and its RUN steps run there in order, with the image's paths
(`/src`, `/opt/metre`) mapped into the temporary directory. The `apt-get` steps are skipped:
they install the compiler and the zlib headers, which this machine must already have (the
Makefile's build needs them too). Then every role the image can be started as answers
`--help`, the kernels are compiled, and the package data (migrations, dashboard) is installed.
Exit status 0 when all of that holds; the first failure is printed and exits 1.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("up", "poller", "processor", "api", "migrate")
"""The commands the image documents (ENTRYPOINT ["metre"])."""


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages(text: str) -> list[Stage]:
    """The stages of a Dockerfile in order (ARGs before the first FROM are substituted)."""
    args: dict[str, str] = {}
    result: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "ARG" and not result:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            base = parts[0]
            for name, value in args.items():
                base = base.replace("${" + name + "}", value)
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(result))
            result.append(Stage(alias, base))
        elif result:
            result[-1].instructions.append((keyword, rest))
    return result


def ignored(rel: str, patterns: list[str]) -> bool:
    """Whether .dockerignore `patterns` exclude the context path `rel` (the last match wins;
    an excluded directory excludes what is under it)."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = (pattern[1:] if negate else pattern).rstrip("/")
        if body.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, body[3:]) for part in rel.split("/"))
        else:
            hit = fnmatch.fnmatch(rel, body) or rel.startswith(body + "/")
        if hit:
            excluded = not negate
    return excluded


def dockerignore(root: Path) -> list[str]:
    path = root / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


def copy_into(
    root: Path, sources: list[str], dest: Path, into_dir: bool, patterns: list[str]
) -> None:
    """COPY `sources` (context paths) to `dest`, as Docker would after .dockerignore."""
    for src in sources:
        origin = root / src
        if not origin.exists() or ignored(src, patterns):
            raise SystemExit(f"image-check: COPY {src}: not in the build context")
        if origin.is_file():
            target = dest / origin.name if into_dir else dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
            continue
        for path in origin.rglob("*"):
            rel = path.relative_to(root).as_posix()
            if ignored(rel, patterns) or not (path.is_symlink() or path.is_file()):
                continue
            target = dest / path.relative_to(origin)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():  # Docker copies a link as a link (metre/ingest -> ../ingest)
                target.symlink_to(path.readlink())
            else:
                shutil.copy2(path, target)


def replay_build(root: Path, work: Path) -> Path:
    """Run the `build` stage into `work`; returns the virtual environment's directory."""
    stage = next(s for s in stages((root / "Dockerfile").read_text()) if s.name == "build")
    mapping = {"/opt/metre": str(work / "opt-metre"), "/src": str(work / "src")}

    def mapped(text: str) -> str:
        for image_path, local in mapping.items():
            text = text.replace(image_path, local)
        return text

    patterns = dockerignore(root)
    cwd = work
    for keyword, rest in stage.instructions:
        if keyword == "WORKDIR":
            cwd = Path(mapped(rest))
            cwd.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, dest = shlex.split(rest)
            target = Path(mapped(dest)) if dest.startswith("/") else cwd / dest
            into_dir = dest.endswith("/") or len(sources) > 1
            copy_into(root, sources, target, into_dir, patterns)
        elif keyword == "RUN":
            if rest.startswith("apt-get"):
                print(f"image-check: skipped (system packages): RUN {rest[:60]}...")
                continue
            print(f"image-check: RUN {rest[:100]}")
            env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
            env.pop("VIRTUAL_ENV", None)
            subprocess.run(["sh", "-c", mapped(rest)], cwd=cwd, env=env, check=True)
        elif keyword in ("ENV", "ARG", "LABEL"):
            continue
        else:
            raise SystemExit(f"image-check: the build stage's {keyword} is not replayed")
    return work / "opt-metre"


def check_runtime(venv: Path) -> None:
    """What the runtime stage runs: each role's command, the kernels, the package data."""
    metre = venv / "bin" / "metre"
    python = venv / "bin" / "python"
    commands = subprocess.run(
        [str(python), "-c", "from metre.cli import parser; import json; "
         "sp = parser()._subparsers._group_actions[0]; print(json.dumps(sorted(sp.choices)))"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    known = set(json.loads(commands.stdout))
    for role in ROLES:
        if role not in known:
            print(f"image-check: `metre {role}` is not a command of this build yet")
            continue
        subprocess.run([str(metre), role, "--help"], check=True, capture_output=True)
        print(f"image-check: metre {role} --help: ok")
    probe = (
        "import pathlib; from metre import kernels as k, api;"
        "import metre.processors.database as s;"
        "impl = {k.IMPLEMENTATION, k.TREEDIFF_IMPLEMENTATION, k.PACKFILE_IMPLEMENTATION,"
        " k.ANCESTRY_IMPLEMENTATION, k.AUTHORSHIP_IMPLEMENTATION, k.CODELINES_IMPLEMENTATION};"
        "assert impl == {'c'}, impl;"
        "assert len(s._migrations()) >= 12;"
        "assert (pathlib.Path(api.__file__).parent / 'static' / 'index.html').exists()"
    )
    subprocess.run([str(python), "-c", probe], check=True)
    print("image-check: compiled kernels, migrations and dashboard installed: ok")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="metre-image-check-"))
    try:
        venv = replay_build(ROOT, work)
        check_runtime(venv)
    except subprocess.CalledProcessError as exc:
        print(f"image-check: failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("image-check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
