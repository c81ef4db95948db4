"""Pure, compiled computations with Python bindings; nothing here does I/O.

Line counts equal to ``git diff --numstat --minimal``:

* ``numstat(old, new) -> (added, removed) | None`` (None when either side is binary),
* ``count_lines(old, new) -> (added, removed)`` (no binary check),
* ``is_binary(data) -> bool`` (a NUL byte in the first 8000 bytes).

The differing entries of two raw git tree objects (see ``kernels._treediff_reference``):

* ``tree_diff(old, new, sha_len=20) -> [(name, old_mode, old_sha, new_mode, new_sha)]``
  (``TREEDIFF_IMPLEMENTATION`` says "c" or "python").

Objects inside git pack files, read from buffers the caller maps (see
``kernels._packfile_reference``):

* ``pack_find(index, sha) -> offset | -1`` in a version-2 pack index,
* ``pack_entry(pack, offset) -> (type, inflated data, base)``
  (``PACKFILE_IMPLEMENTATION`` says "c" or "python").

Degree of authorship and truck factor (Avelino et al., ICPC 2016; see
``kernels._authorship_reference``):

* ``authorship(files, authors, created, changes) -> (doas, is_author)``,
* ``truck_factor(n_files, files, authors) -> authors removed, in order``.

The compiled extension ``kernels._linediff`` is used when it was built (``pip install -e .`` on a
machine with a C compiler); otherwise the pure-Python twin ``kernels._reference`` (the spec, much
slower) is used, and a warning is *logged* on the ``kernels`` logger (logged rather than
warned so that importing never fails under ``-W error``). ``IMPLEMENTATION`` says which: "c" or
"python" (``AUTHORSHIP_IMPLEMENTATION`` for the authorship kernel ``kernels._authorship``).

``METRE_KERNELS=python`` in the environment forces the pure twin. It is the one environment read
outside ``metre.settings``, at import time on purpose, like aiokafka's switch for its own
extensions: it must hold before anything calls a kernel, and tests and benchmarks use it to
compare both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from kernels import (
    _authorship_reference,
    _packfile_reference,
    _reference,
    _treediff_reference,
)

__all__ = [
    "AUTHORSHIP_IMPLEMENTATION",
    "IMPLEMENTATION",
    "PACKFILE_IMPLEMENTATION",
    "TREEDIFF_IMPLEMENTATION",
    "authorship",
    "count_lines",
    "is_binary",
    "numstat",
    "pack_entry",
    "pack_find",
    "tree_diff",
    "truck_factor",
]

_log = logging.getLogger(__name__)

numstat: Callable[[bytes, bytes], tuple[int, int] | None] = _reference.numstat
count_lines: Callable[[bytes, bytes], tuple[int, int]] = _reference.count_lines
is_binary: Callable[[bytes], bool] = _reference.is_binary
_implementation: Literal["c", "python"] = "python"

if os.environ.get("METRE_KERNELS", "").strip().lower() == "python":
    _log.debug("METRE_KERNELS=python: using the pure-Python kernels")
else:
    try:
        from kernels import _linediff
    except ImportError as exc:
        _log.warning("compiled kernels unavailable (%s); using the slow pure-Python ones", exc)
    else:
        numstat = _linediff.numstat
        count_lines = _linediff.count_lines
        is_binary = _linediff.is_binary
        _implementation = "c"

IMPLEMENTATION: Final[Literal["c", "python"]] = _implementation
"""Which implementation the public functions are: "c" (compiled) or "python" (reference)."""

authorship: Callable[
    [Sequence[int], Sequence[int], Sequence[int], Sequence[int]], tuple[list[float], list[bool]]
] = _authorship_reference.authorship
truck_factor: Callable[[int, Sequence[int], Sequence[int]], list[int]] = (
    _authorship_reference.truck_factor
)
_authorship_implementation: Literal["c", "python"] = "python"
if os.environ.get("METRE_KERNELS", "").strip().lower() != "python":
    try:
        from kernels import _authorship
    except ImportError as exc:
        _log.warning("compiled authorship kernel unavailable (%s); using the pure-Python one", exc)
    else:
        authorship = _authorship.authorship
        truck_factor = _authorship.truck_factor
        _authorship_implementation = "c"

AUTHORSHIP_IMPLEMENTATION: Final[Literal["c", "python"]] = _authorship_implementation
"""Which implementation `authorship` and `truck_factor` are: "c" or "python"."""

tree_diff: Callable[[bytes, bytes, int], list[_treediff_reference.TreeDiff]] = (
    _treediff_reference.tree_diff
)
_treediff_implementation: Literal["c", "python"] = "python"
if os.environ.get("METRE_KERNELS", "").strip().lower() != "python":
    try:
        from kernels import _treediff
    except ImportError as exc:
        _log.warning("compiled tree diff unavailable (%s); using the pure-Python one", exc)
    else:
        tree_diff = _treediff.tree_diff
        _treediff_implementation = "c"

TREEDIFF_IMPLEMENTATION: Final[Literal["c", "python"]] = _treediff_implementation
"""Which implementation `tree_diff` is: "c" or "python"."""

pack_find: Callable[[Any, bytes], int] = _packfile_reference.pack_find
pack_entry: Callable[[Any, int], tuple[int, bytes, int | bytes | None]] = (
    _packfile_reference.pack_entry
)
_packfile_implementation: Literal["c", "python"] = "python"
if os.environ.get("METRE_KERNELS", "").strip().lower() != "python":
    try:
        from kernels import _packfile
    except ImportError as exc:
        _log.warning("compiled pack reader unavailable (%s); using the pure-Python one", exc)
    else:
        pack_find = _packfile.pack_find
        pack_entry = _packfile.pack_entry
        _packfile_implementation = "c"

PACKFILE_IMPLEMENTATION: Final[Literal["c", "python"]] = _packfile_implementation
"""Which implementation `pack_find` and `pack_entry` are: "c" or "python"."""
