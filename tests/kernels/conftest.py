"""Every kernel test runs on both twins: the compiled extension and the pure-Python reference."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

import pytest


def compiled_is_built() -> bool:
    """Whether a built ``metre.kernels._linediff`` extension is importable from this checkout."""
    return importlib.util.find_spec("metre.kernels._linediff") is not None


@pytest.fixture(scope="session", params=["c", "python"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """A module with ``numstat``, ``count_lines`` and ``is_binary``: one of the two twins."""
    if request.param == "python":
        return importlib.import_module("metre.kernels._reference")
    if not compiled_is_built():
        pytest.skip("metre.kernels._linediff is not built (no C compiler at install time)")
    return importlib.import_module("metre.kernels._linediff")
