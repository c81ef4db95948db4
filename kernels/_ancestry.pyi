"""Type stub of the compiled twin of metre.kernels._ancestry_reference (kernels/_ancestry.c)."""

from collections.abc import Sequence
from typing import Any

def lowest_common_ancestors(
    starts: Any, parents: Any, first: int, others: Sequence[int], /
) -> list[int]: ...
