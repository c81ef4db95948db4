"""Type stub of the compiled twin of kernels._packfile_reference (kernels/_packfile.c)."""

from mmap import mmap

_Buffer = bytes | bytearray | memoryview | mmap

def pack_find(index: _Buffer, sha: bytes, /) -> int: ...
def pack_entry(pack: _Buffer, offset: int, /) -> tuple[int, bytes, int | bytes | None]: ...
