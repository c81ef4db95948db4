"""Type stub of the compiled twin of metre.kernels._authorship_reference (kernels/_authorship.c)."""

from collections.abc import Sequence

def authorship(
    files: Sequence[int],
    authors: Sequence[int],
    created: Sequence[int],
    changes: Sequence[int],
    /,
) -> tuple[list[float], list[bool]]: ...
def truck_factor(n_files: int, files: Sequence[int], authors: Sequence[int], /) -> list[int]: ...
