"""Fetching from a remote (git://, ssh, http(s)) into a mirror (I/O, blocking: run in a thread).

dulwich's `GitClient.fetch` does the transfer; what is around it is metre's: the haves come
from `metre.ingest.negotiate.HaveWalker` (bounded, newest first), the pack is written to a temporary
file in the mirror's pack directory, then indexed (and completed when thin) by
`metre.ingest.packindex` with the compiled pack kernel, never parsed.
"""

from __future__ import annotations

import binascii
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dulwich.client import FetchPackResult, GitClient
from dulwich.objects import ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from metre.ingest.negotiate import HaveWalker, RawRead, pack_read
from metre.ingest.packindex import land_pack
from metre.ingest.packs import PackReader

__all__ = ["REF_PREFIXES", "fetch_remote"]

_MIRRORED = (b"refs/heads/", b"refs/tags/")
REF_PREFIXES = (b"HEAD", *_MIRRORED)
"""What a fetch asks the remote to list (protocol v2 ``ls-refs`` ``ref-prefix``): the
mirror keeps only branches, tags and HEAD, and a forge's pull-request refs
(``refs/pull/*``, often more than its branches and tags together) are then neither sent
nor parsed. A server speaking protocol v0 lists every ref; dulwich drops the others."""
Wants = Callable[[Mapping[Ref, ObjectID], int | None], list[ObjectID]]


def fetch_remote(
    client: GitClient,
    path: str,
    target: Repo,
    held: Mapping[bytes, bytes],
    wants: Wants,
    fallback: RawRead,
) -> tuple[FetchPackResult, HaveWalker]:
    """Fetch what `wants` asks for from `path` into `target`'s packs; returns dulwich's result
    (the remote's refs and symrefs) and the walker (how many haves it sent). `held` is the
    mirror's refs as the caller read them (`metre.ingest.refstore.read_refs`: dulwich's refs
    container opened a file and checked the name of every ref, most of an idle poll's CPU on
    a history with a thousand tags). `fallback` reads a raw object the compiled pack reader
    cannot (loose objects)."""
    store: Any = target.object_store
    local = {Ref(n): ObjectID(s) for n, s in held.items() if n.startswith(_MIRRORED)}
    reader = PackReader(store)
    walker = HaveWalker(local, pack_read(reader, fallback))

    def determine(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
        walker.advertised = refs
        return wants(refs, depth)

    pack_dir = Path(store.pack_dir)
    fd, name = tempfile.mkstemp(dir=pack_dir, prefix="tmp-incoming-")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            result = client.fetch_pack(
                path, determine, walker, f.write, ref_prefix=list(REF_PREFIXES)
            )

        def outside(name: bytes) -> tuple[int, bytes] | None:
            try:
                return reader.get_raw_binary(name) or fallback(binascii.hexlify(name))
            except KeyError:
                return None

        land_pack(tmp, pack_dir, outside)
    finally:
        reader.close()
        if tmp.exists():
            tmp.unlink()
    return result, walker
