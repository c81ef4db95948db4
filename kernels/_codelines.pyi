"""Type stub of the compiled twin of metre.kernels._codelines_reference (kernels/_codelines.c)."""

def code_lines(
    data: bytes,
    line_comments: tuple[bytes, ...],
    blocks: tuple[tuple[bytes, bytes], ...],
    strings: tuple[tuple[bytes, bytes, int], ...],
    flags: int,
    /,
) -> int: ...
