"""What a mirror tells a remote it has: a short, bounded list of haves (I/O: reads the mirror).

dulwich's own graph walker offers every commit of the mirror's history, in no particular
order, until the server acknowledges enough; over protocol v2 it sends them all in one request
before the server answers at all, so one new commit cost a walk of the whole history and a
have per commit (the README's Performance section, "Freshness"). git stops at the first
common commits; the haves chosen here are the ones that are common in practice, newest first,
and never more than `MAX_HAVES`:

1. the commits the mirror's refs point at that the remote no longer advertises (a branch that
   moved: its old tip is almost always the parent of what was pushed), newest first;
2. the mirror's branch tips the remote still advertises unchanged (known common, as git's
   ``known_common``: needed when a push merges another branch);
3. ancestors of the moved tips at first-parent distances 1, 2, 4, ... up to `SKIP_DEPTH`
   (git's "skipping" negotiator's idea, for a force-push that rewrote the last commits);
4. the mirror's tags the remote still advertises, peeled to commits.

Over stateful transports the server's ACKs arrive while haves are sent; an "ACK ready" ends
the list early (dulwich stops then). Whatever the server does not recognise costs it only a
lookup; what it does recognise bounds the pack to the new objects.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterator, Mapping

from dulwich.objects import ObjectID
from dulwich.refs import Ref

from metre.ingest.git.commit import header_values, ident_time
from metre.ingest.packs import PackReader

__all__ = ["MAX_HAVES", "SKIP_DEPTH", "HaveWalker"]

MAX_HAVES = 256
"""At most this many haves per fetch (dulwich's own cap for stateless HTTP requests)."""
SKIP_DEPTH = 256
"""How far down first parents the skipping haves reach (commits read: at most this many)."""

_HEADS, _TAGS = b"refs/heads/", b"refs/tags/"
_COMMIT, _TAG = 1, 4
RawRead = Callable[[bytes], tuple[int, bytes]]


class HaveWalker:
    """dulwich's graph-walker interface (`next`, `ack`, `nak`, `shallow`) over a bounded list
    of haves computed once, when the first have is asked for (after the remote's refs are
    known: `advertised` is set by the fetch's `determine_wants`)."""

    def __init__(self, local_refs: Mapping[Ref, ObjectID], read: RawRead) -> None:
        self.local_refs: dict[bytes, bytes] = {bytes(n): bytes(s) for n, s in local_refs.items()}
        self.advertised: Mapping[Ref, ObjectID] = {}
        self.shallow: set[bytes] = set()
        self.sent = 0
        """Haves handed out so far (what the server was told)."""
        self.acks: list[bytes] = []
        self._read = read
        self._plan: Iterator[bytes] | None = None
        self._ready = False

    def ack(self, sha: ObjectID) -> None:
        self.acks.append(sha)

    def nak(self) -> None:
        """Nothing in common yet: the list goes on."""

    def next(self) -> ObjectID | None:
        if self._plan is None:
            self._plan = self._haves()
        if self.sent >= MAX_HAVES:
            return None
        sha = next(self._plan, None)
        if sha is None:
            return None
        self.sent += 1
        return ObjectID(sha)

    __next__ = next

    def _commit(self, sha: bytes) -> tuple[int, list[bytes]] | None:
        """(committer time, parents) of a commit, peeling tags; None for anything else."""
        for _ in range(8):
            try:
                type_num, data = self._read(sha)
            except (KeyError, ValueError):
                return None
            if type_num == _TAG:
                sha = next(iter(header_values(data, b"object")), b"")
                continue
            if type_num != _COMMIT:
                return None
            committer = next(iter(header_values(data, b"committer")), b"")
            return ident_time(committer), header_values(data, b"parent")
        return None

    def _peeled(self, sha: bytes) -> bytes | None:
        for _ in range(8):
            try:
                type_num, data = self._read(sha)
            except (KeyError, ValueError):
                return None
            if type_num == _COMMIT:
                return sha
            if type_num != _TAG:
                return None
            sha = next(iter(header_values(data, b"object")), b"")
        return None

    def _haves(self) -> Iterator[bytes]:
        advertised = set(self.advertised.values())
        moved: list[tuple[int, bytes, list[bytes]]] = []
        common_heads: list[bytes] = []
        common_tags: list[bytes] = []
        for name, sha in sorted(self.local_refs.items()):
            if sha not in advertised:
                info = self._commit(sha)
                if info is not None:
                    moved.append((info[0], sha, info[1]))
            elif name.startswith(_HEADS):
                common_heads.append(sha)
            elif name.startswith(_TAGS):
                common_tags.append(sha)
        given: set[bytes] = set()

        def fresh(sha: bytes | None) -> bool:
            if sha is None or sha in given:
                return False
            given.add(sha)
            return True

        moved.sort(reverse=True)
        for _, sha, _ in moved:
            if fresh(sha):
                yield sha
        for sha in common_heads:
            peeled = self._peeled(sha)
            if fresh(peeled):
                assert peeled is not None
                yield peeled
        for _, sha, parents in moved:
            distance, mark = 0, 1
            while parents and distance < SKIP_DEPTH:
                sha = parents[0]
                distance += 1
                if distance == mark:
                    mark *= 2
                    if fresh(sha):
                        yield sha
                info = self._commit(sha)
                parents = info[1] if info else []
        for sha in reversed(common_tags):  # by name, the newest versions last: they go first
            peeled = self._peeled(sha)
            if fresh(peeled):
                assert peeled is not None
                yield peeled


def pack_read(reader: PackReader, fallback: RawRead) -> RawRead:
    """Raw reads through the compiled pack reader, falling back (loose objects) to `fallback`."""

    def read(sha: bytes) -> tuple[int, bytes]:
        try:
            found = reader.get_raw(sha)
        except (ValueError, IndexError, binascii.Error):
            found = None
        return found if found is not None else fallback(sha)

    return read
