"""Type stub of the compiled twin of metre.kernels._treediff_reference (kernels/_treediff.c)."""

def tree_diff(
    old: bytes, new: bytes, sha_len: int = 20, /
) -> list[tuple[bytes, int | None, bytes | None, int | None, bytes | None]]: ...
