"""Pure, compiled computations with Python bindings; nothing here does I/O.

Line counts equal to ``git diff --numstat --minimal``:

* ``numstat(old, new) -> (added, removed) | None`` (None when either side is binary),
* ``count_lines(old, new) -> (added, removed)`` (no binary check),
* ``is_binary(data) -> bool`` (a NUL byte in the first 8000 bytes).

The differing entries of two raw git tree objects (see ``metre.kernels._treediff_reference``):

* ``tree_diff(old, new, sha_len=20) -> [(name, old_mode, old_sha, new_mode, new_sha)]``
  (``TREEDIFF_IMPLEMENTATION`` says "c" or "python").

Objects inside git pack files, read from buffers the caller maps (see
``metre.kernels._packfile_reference``):

* ``pack_find(index, sha) -> offset | -1`` in a version-2 pack index,
* ``pack_entry(pack, offset) -> (type, inflated data, base)``
  (``PACKFILE_IMPLEMENTATION`` says "c" or "python").

Merge bases in a commit graph numbered topologically (see ``metre.kernels._ancestry_reference``):

* ``lowest_common_ancestors(starts, parents, first, others) -> [commit]``
  (``ANCESTRY_IMPLEMENTATION`` says "c" or "python").

Lines of code of a text, by a syntax the caller gives (see ``metre.kernels._codelines_reference``):

* ``code_lines(data, line_comments, blocks, strings, flags) -> int``
  (``CODELINES_IMPLEMENTATION`` says "c" or "python").

Degree of authorship and truck factor (Avelino et al., ICPC 2016; see
``metre.kernels._authorship_reference``):

* ``authorship(files, authors, created, changes) -> (doas, is_author)``,
* ``truck_factor(n_files, files, authors) -> authors removed, in order``.

The compiled extension ``metre.kernels._linediff`` is used when it was built (``pip install -e .``
on a machine with a C compiler); otherwise the pure-Python twin ``metre.kernels._reference`` (the
spec, much
slower) is used, and a warning is *logged* on the ``kernels`` logger (logged rather than
warned so that importing never fails under ``-W error``). ``IMPLEMENTATION`` says which: "c" or
"python" (``AUTHORSHIP_IMPLEMENTATION`` for the authorship kernel ``metre.kernels._authorship``).

``METRE_KERNELS=python`` in the environment forces the pure twin. It is the one environment read
outside ``metre.settings``, at import time on purpose, like aiokafka's switch for its own
extensions: it must hold before anything calls a kernel, and tests and benchmarks use it to
compare both.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from metre.kernels import (
    _ancestry_reference,
    _authorship_reference,
    _codelines_reference,
    _packfile_reference,
    _reference,
    _treediff_reference,
)

__all__ = [
    "ANCESTRY_IMPLEMENTATION",
    "AUTHORSHIP_IMPLEMENTATION",
    "CODELINES_IMPLEMENTATION",
    "IMPLEMENTATION",
    "PACKFILE_IMPLEMENTATION",
    "TREEDIFF_IMPLEMENTATION",
    "authorship",
    "code_lines",
    "count_lines",
    "is_binary",
    "lowest_common_ancestors",
    "numstat",
    "pack_entry",
    "pack_find",
    "pack_object",
    "tree_diff",
    "truck_factor",
]

_log = logging.getLogger(__name__)
_FORCED_PYTHON = os.environ.get("METRE_KERNELS", "").strip().lower() == "python"
if _FORCED_PYTHON:
    _log.debug("METRE_KERNELS=python: using the pure-Python kernels")


def _compiled(module: str, what: str) -> Any:
    """The compiled extension `metre.kernels.<module>`, or None: when METRE_KERNELS=python, or when
    it was not built (logged, not warned: importing must not fail under ``-W error``)."""
    if _FORCED_PYTHON:
        return None
    try:
        return importlib.import_module(f"{__name__}.{module}")
    except ImportError as exc:
        _log.warning("compiled %s unavailable (%s); using the pure-Python one", what, exc)
        return None


def _which(ext: Any) -> Literal["c", "python"]:
    return "python" if ext is None else "c"


_linediff = _compiled("_linediff", "kernels")
_line = _linediff or _reference
numstat: Callable[[bytes, bytes], tuple[int, int] | None] = _line.numstat
count_lines: Callable[[bytes, bytes], tuple[int, int]] = _line.count_lines
is_binary: Callable[[bytes], bool] = _line.is_binary
IMPLEMENTATION: Final[Literal["c", "python"]] = _which(_linediff)
"""Which implementation the public functions are: "c" (compiled) or "python" (reference)."""

_authorship = _compiled("_authorship", "authorship kernel")
_doa = _authorship or _authorship_reference
authorship: Callable[
    [Sequence[int], Sequence[int], Sequence[int], Sequence[int]], tuple[list[float], list[bool]]
] = _doa.authorship
truck_factor: Callable[[int, Sequence[int], Sequence[int]], list[int]] = _doa.truck_factor
AUTHORSHIP_IMPLEMENTATION: Final[Literal["c", "python"]] = _which(_authorship)
"""Which implementation `authorship` and `truck_factor` are: "c" or "python"."""

_treediff = _compiled("_treediff", "tree diff")
tree_diff: Callable[[bytes, bytes, int], list[_treediff_reference.TreeDiff]] = (
    _treediff or _treediff_reference
).tree_diff
TREEDIFF_IMPLEMENTATION: Final[Literal["c", "python"]] = _which(_treediff)
"""Which implementation `tree_diff` is: "c" or "python"."""

_packfile = _compiled("_packfile", "pack reader")
_packs = _packfile or _packfile_reference
pack_find: Callable[[Any, bytes], int] = _packs.pack_find
pack_entry: Callable[[Any, int], tuple[int, bytes, int | bytes | None]] = _packs.pack_entry
pack_object: Callable[[Any, int], tuple[int, bytes, int | bytes | None, int]] = _packs.pack_object
PACKFILE_IMPLEMENTATION: Final[Literal["c", "python"]] = _which(_packfile)
"""Which implementation `pack_find` and `pack_entry` are: "c" or "python"."""

_ancestry = _compiled("_ancestry", "merge-base kernel")
lowest_common_ancestors: Callable[[Any, Any, int, Sequence[int]], list[int]] = (
    _ancestry or _ancestry_reference
).lowest_common_ancestors
ANCESTRY_IMPLEMENTATION: Final[Literal["c", "python"]] = _which(_ancestry)
"""Which implementation `lowest_common_ancestors` is: "c" or "python"."""

_codelines = _compiled("_codelines", "code-lines kernel")
code_lines: Callable[
    [
        bytes,
        tuple[bytes, ...],
        tuple[tuple[bytes, bytes], ...],
        tuple[tuple[bytes, bytes, int], ...],
        int,
    ],
    int,
] = (_codelines or _codelines_reference).code_lines
CODELINES_IMPLEMENTATION: Final[Literal["c", "python"]] = _which(_codelines)
"""Which implementation `code_lines` is: "c" or "python"."""
