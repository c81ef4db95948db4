"""Importing the API and building its app loads no dulwich: the API reads PostgreSQL only, and
the git machinery (dulwich, the mirror, the pollers) belongs to the poller role."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]

_BUILD_APP = """
import sys, tempfile, pathlib
from metre.api.app import create_app
from metre.settings import Settings
create_app(Settings(data_dir=pathlib.Path(tempfile.mkdtemp())))
print(sorted(m for m in sys.modules if m == "dulwich" or m.startswith("dulwich.")))
"""


def _loaded(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.strip()


def test_the_api_loads_no_dulwich() -> None:
    assert _loaded(_BUILD_APP) == "[]"


def test_the_check_sees_dulwich_when_it_is_loaded() -> None:
    code = _BUILD_APP.replace(
        "from metre.api.app", "import metre.ingest.mirror\nfrom metre.api.app"
    )
    assert _loaded(code) != "[]"
