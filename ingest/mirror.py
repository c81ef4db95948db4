"""Bare mirrors of registered repositories, fetched and kept equal to their remotes (I/O,
blocking: run in a thread).

`open_mirror` fetches a remote (http(s), ssh or git URL, local path or file:// URL) into
``<mirrors_dir>/<repo_id>.git`` (local paths: `metre.ingest.localfetch`; remotes: dulwich's
transport with `metre.ingest.remotefetch`'s haves and pack indexing; refs: `metre.ingest.refstore`);
later calls transfer only objects the mirror lacks, then the mirror's branches, tags and HEAD
are set to the remote's (force-pushes included: objects of rewritten commits stay in the
mirror, so retraction can still read them). Every failure to reach or read a repository is a
`RepositoryError` whose message is safe to show (`metre.ingest.fetcherrors`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from dulwich.client import GitClient, LocalGitClient
from dulwich.objects import ZERO_SHA, Commit, ObjectID, Tag
from dulwich.refs import Ref
from dulwich.repo import Repo

from metre.ingest import repourls
from metre.ingest.credentials import CredentialTable, credential_for
from metre.ingest.deadlines import FetchClock, FetchDeadlines, resolve_within
from metre.ingest.fetcherrors import FETCH_ERRORS, describe, redact
from metre.ingest.git.commit import header_values
from metre.ingest.git.errors import RepositoryError
from metre.ingest.git.rawread import raw_object
from metre.ingest.localfetch import MirrorObjects, consolidate, fetch_local
from metre.ingest.mirrordir import mirror_path
from metre.ingest.refstore import read_refs, write_head, write_packed_refs
from metre.ingest.remotefetch import fetch_remote
from metre.ingest.repourls import local_repository
from metre.ingest.transport import SshReuse, pinned_client
from metre.ingest.urlpolicy import (
    InvalidRepositoryURL,
    Resolver,
    UrlPolicy,
    parse_remote,
    pinned_address,
)

__all__ = [
    "FetchAccess",
    "open_mirror",
    "resolve_head",
]

_HEADS = b"refs/heads/"
_TAGS = b"refs/tags/"
_MIRRORED = (_HEADS, _TAGS)
_HEAD = Ref(b"HEAD")


@dataclass(frozen=True, slots=True)
class FetchAccess:
    """What a fetch may reach and with which credentials (built from Settings by the runtime).

    The default admits public https remotes and local paths: a local path in the registry was
    admitted when it was registered (`validate_url` with the server's policy).
    """

    policy: UrlPolicy = field(default_factory=lambda: UrlPolicy(allow_local_paths=True))
    credentials: CredentialTable = field(default_factory=dict)
    resolve: Resolver = field(default=lambda host, port: repourls.system_resolve(host, port))
    ca_file: Path | None = None
    """Certificate authorities https fetches trust (PEM); None: the system's."""
    deadlines: FetchDeadlines = field(default_factory=FetchDeadlines)
    """Connect, idle and total deadlines of a fetch from a remote (`metre.ingest.deadlines`)."""
    ssh_reuse: SshReuse | None = None
    """Where ssh keeps connections open for the next fetch (None: one connection per fetch)."""


def _init_mirror(dest: Path) -> None:
    """Create an empty bare repository at `dest` atomically (a crash leaves no half mirror)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    Repo.init_bare(tmp, mkdir=True).close()
    try:
        tmp.rename(dest)
    except OSError:  # another thread created it first
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.exists():
            raise


def open_mirror(
    mirrors_dir: Path,
    repo_id: int,
    url: str,
    access: FetchAccess | None = None,
    *,
    clock: FetchClock | None = None,
) -> Path:
    """Create or update the bare mirror of `url`; returns its path. Idempotent; blocking.

    Only refs/heads/* and refs/tags/* are fetched (not pull-request refs, never submodules);
    the mirror's refs then equal the remote's, HEAD included (a symbolic ref to the remote's
    default branch). The URL is checked again against `access.policy` (DNS may have changed
    since registration) and the fetch connects to the address that was checked. A remote's
    transfer runs under `access.deadlines`: past one, the fetch fails with a message naming
    the deadline (`clock`: the caller's, to abort the fetch from another thread; None: a new
    one).
    """
    access = access or FetchAccess()
    dest = mirror_path(mirrors_dir, repo_id)
    reason = None
    clock = (clock or FetchClock(access.deadlines)).start()
    try:
        client, path = _client(url, access, clock)
        if not (dest / "objects").is_dir():
            _init_mirror(dest)
        with Repo(str(dest)) as target:
            present = MirrorObjects(target.object_store)
            # The mirror's own refs name objects it holds (`_update_refs` writes no other):
            # only the refs that moved are looked up, not every tag of a long history.
            held, held_symrefs = read_refs(dest)
            try:

                def wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
                    # Set differences in C: a poll meets thousands of unchanged tags.
                    moved = refs.items() - cast(Mapping[Ref, ObjectID], held).items()
                    new = {
                        sha
                        for name, sha in moved
                        if _is_mirrored(name, sha) and not present.has(sha)
                    }
                    return sorted(new - {ZERO_SHA})

                if isinstance(client, LocalGitClient):
                    refs, symrefs = fetch_local(path, target, wants, clock.check)
                else:
                    store = target.object_store
                    result, _ = fetch_remote(
                        client, path, target, held, wants, lambda sha: raw_object(store, sha)
                    )
                    refs, symrefs = result.refs, result.symrefs
            finally:
                present.close()
            target.object_store.close()  # its pack cache may name packs merged away next
            consolidate(target.object_store)
            _update_refs(target, refs, symrefs, (held, held_symrefs))
    except (RepositoryError, InvalidRepositoryURL) as exc:
        reason = str(exc)
    except FETCH_ERRORS as exc:
        reason = clock.explain(exc) or describe(exc)
    finally:
        clock.stop()
    if reason is not None:
        raise RepositoryError(f"cannot fetch {redact(url)}: {reason}")
    return dest


def _client(url: str, access: FetchAccess, clock: FetchClock) -> tuple[GitClient, str]:
    """The client to fetch `url` with, bound to the address the policy checked and to the
    fetch's deadlines."""
    remote = parse_remote(url, access.policy)
    if remote.scheme == "local":
        return LocalGitClient(), local_repository(remote.url, True)
    address = pinned_address(
        remote, access.policy, lambda host, port: resolve_within(access.resolve, host, port, clock)
    )
    credential = credential_for(access.credentials, remote.url)
    return pinned_client(
        remote,
        address,
        credential if remote.scheme != "ssh" else None,
        ca_file=access.ca_file,
        clock=clock,
        ssh_reuse=access.ssh_reuse,
    )


def _is_mirrored(name: bytes, sha: bytes | None) -> bool:
    """A branch or a tag of the remote (not a peeled entry, not a pull-request ref)."""
    return bool(sha) and name.startswith(_MIRRORED) and not name.endswith(b"^{}")


def _update_refs(
    target: Repo,
    remote: Mapping[Ref, ObjectID | None],
    symrefs: Mapping[Ref, Ref],
    held: tuple[dict[bytes, bytes], dict[bytes, bytes]] | None = None,
) -> None:
    """Make the mirror's branches, tags and HEAD equal the remote's (the mirror's refs are
    read once, or given as `held`, and written once, as one packed-refs file, only when they
    differ)."""
    gitdir = Path(target.controldir())
    stored, current_symrefs = held if held is not None else read_refs(gitdir)
    # Set differences in C: a poll meets thousands of unchanged tags.
    mine = cast(Mapping[bytes, bytes | None], remote)
    changed = {n: s for n, s in mine.items() - stored.items() if _is_mirrored(n, s)}
    drop = {n for n in stored.keys() - mine.keys() if n.startswith(_MIRRORED)}
    drop.update(n for n, s in mine.items() if not s and n in stored)  # (rare: no sha)
    if changed:
        present = MirrorObjects(target.object_store)
        try:
            missing = {n for n, s in changed.items() if not present.has(cast(bytes, s))}
        finally:
            present.close()
        for name in missing:  # named by the remote, not fetched: left out until it is
            del changed[name]
            if name in stored:
                drop.add(name)

    def final() -> dict[bytes, bytes]:
        refs = dict(stored)  # refs/ and HEAD (`read_refs`)
        for name in (b"HEAD", *drop):
            refs.pop(name, None)
        refs.update(cast(dict[bytes, bytes], changed))
        return refs

    if changed or drop:
        write_packed_refs(gitdir, final(), sorted(_loose_mirrored(gitdir)))
    head = symrefs.get(_HEAD)
    remote_head = remote.get(_HEAD)
    if head is None and remote_head:  # no symref capability: guess from the sha
        same = sorted(
            Ref(n) for n, s in final().items() if n.startswith(_HEADS) and s == remote_head
        )
        preferred = [n for n in (Ref(b"refs/heads/main"), Ref(b"refs/heads/master")) if n in same]
        head = next(iter(preferred or same), None)
    if head is not None and head.startswith(_HEADS) and current_symrefs.get(_HEAD) != head:
        write_head(gitdir, head)


def _loose_mirrored(gitdir: Path) -> list[bytes]:
    """Names of the loose branch and tag files of a mirror (older mirrors wrote them)."""
    out = []
    for top in ("heads", "tags"):
        for root, _, files in os.walk(gitdir / "refs" / top):
            rel = os.path.relpath(root, gitdir)
            out += [os.fsencode(os.path.join(rel, f)) for f in files]
    return out


def resolve_head(mirror: Path, branch: str | None) -> str:
    """The commit sha the tracked branch points at (None: the remote's default branch).

    `branch` is a short name ("main") or a full ref ("refs/heads/main"). Raises
    `RepositoryError` when the repository is empty or the branch does not exist.
    """
    try:
        # refs read in one pass (metre.ingest.refstore): dulwich's refs container parsed and checked
        # every packed ref again per lookup, a tenth of a second per poll with a thousand tags
        refs, _ = read_refs(mirror)
        if branch is None:
            name = _HEAD
        else:
            short = branch.removeprefix("refs/heads/")
            name = Ref(_HEADS + short.encode())
        found = refs.get(name)
        if found is None:  # the branches are listed for the message only (thousands of refs)
            branches = sorted(
                n[len(_HEADS) :].decode(errors="replace") for n in refs if n.startswith(_HEADS)
            )
            if not branches:
                raise RepositoryError("the repository is empty (it has no branches)")
            if branch is None:
                raise RepositoryError("the repository's default branch (HEAD) points at no commit")
            raise RepositoryError(
                f"branch {short!r} does not exist (branches: {', '.join(branches[:20])})"
            )
        with Repo(str(mirror)) as repo:
            sha = ObjectID(found)
            # raw reads: dulwich's Commit refuses dates git accepts
            type_num, data = raw_object(repo.object_store, sha)
            while type_num == Tag.type_num:
                sha = ObjectID(header_values(data, b"object")[0])
                type_num, data = raw_object(repo.object_store, sha)
            if type_num != Commit.type_num:
                raise RepositoryError(f"{name.decode(errors='replace')} does not name a commit")
            return sha.decode("ascii")
    except RepositoryError:
        raise
    except FETCH_ERRORS as exc:
        raise RepositoryError(f"cannot read the mirror: {describe(exc)}") from None
