"""Which repository a registered URL or path names (I/O: resolves names, reads the file system).

`metre.ingest.urlpolicy` decides which URLs are admitted; here they are applied: a remote's host is
resolved and every address checked, a local path is made canonical (so one repository is
registered once, whichever spelling is given) and must hold a git repository. No dulwich at
import: the API validates URLs with this module.
"""

from __future__ import annotations

import os
import socket

from metre.ingest.git.repodir import control_dirs
from metre.ingest.urlpolicy import (
    InvalidRepositoryURL,
    Resolver,
    UrlPolicy,
    parse_remote,
    pinned_address,
)

__all__ = ["check_host", "local_repository", "real_path", "system_resolve", "validate_url"]


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the order the system would try them (blocking)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def validate_url(url: str, allow_local: bool = False, *, policy: UrlPolicy | None = None) -> str:
    """Return the canonical form of a repository URL, or raise `InvalidRepositoryURL`.

    `policy` (default: https only, plus local paths when `allow_local`) decides the schemes;
    see `metre.ingest.urlpolicy`. Local paths and ``file://`` URLs must name an existing git
    repository (bare or not) and come back as a normalised absolute path. No name is resolved
    here: `check_host` does that.
    """
    policy = policy or UrlPolicy(allow_local_paths=allow_local)
    remote = parse_remote(url, policy)
    if remote.scheme == "local":
        return local_repository(remote.url, True)
    return remote.url


def check_host(url: str, policy: UrlPolicy, resolve: Resolver | None = None) -> str | None:
    """Resolve the host of a validated URL and check every address; returns the address a
    fetch would use (None for a local path). Raises `InvalidRepositoryURL`. Blocking."""
    remote = parse_remote(url, policy)
    if remote.scheme == "local":
        return None
    return pinned_address(remote, policy, resolve or system_resolve)


_REFUSED_ROOTS = ("/proc",)
"""Trees no repository is registered from: ``/proc/self/cwd`` is metre's own working
directory, ``/proc/<pid>/root`` another process's filesystem."""


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def real_path(path: str) -> str:
    """`path` with every symbolic link resolved, refusing any step through a refused root
    (a link to ``/proc/self/cwd`` is refused, not followed to where it leads). Blocking."""
    todo = [p for p in path.split("/") if p]
    done = "/"
    hops = 0
    while todo:
        if any(_under(done, root) for root in _REFUSED_ROOTS):
            break
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            done = os.path.dirname(done)
            continue
        candidate = os.path.join(done, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise InvalidRepositoryURL(
                    f"{path} does not exist or is not a directory (too many levels of "
                    "symbolic links)"
                )
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = "/"
            todo = [p for p in target.split("/") if p] + todo
            continue
        done = candidate
    if any(_under(done, root) for root in _REFUSED_ROOTS):
        raise InvalidRepositoryURL(
            f"{path} leads into {_REFUSED_ROOTS[0]}: paths of the process filesystem are not "
            "repositories metre registers"
        )
    return done


def local_repository(path: str, allow_local: bool) -> str:
    """The canonical path of a local repository (its identity): symbolic links resolved,
    ``//`` and trailing slashes gone, and a work tree's ``.git`` directory named by the work
    tree, so one repository is registered once whichever spelling is given."""
    if not allow_local:
        raise InvalidRepositoryURL(
            "local paths are not accepted on this server (METRE_ALLOW_LOCAL_PATHS=true admits them)"
        )
    if not path.startswith("/"):
        raise InvalidRepositoryURL("a local repository must be given as an absolute path")
    norm = real_path(path)
    if not os.path.isdir(norm):
        raise InvalidRepositoryURL(f"{norm} does not exist or is not a directory")
    if os.path.basename(norm) == ".git" and _is_work_tree(os.path.dirname(norm), norm):
        norm = os.path.dirname(norm)
    dirs = control_dirs(norm)
    if dirs is None:
        raise InvalidRepositoryURL(f"{norm} is not a git repository")
    # dulwich opens a `.git` file naming a missing directory; git does not.
    if not (dirs[0] / "objects").is_dir():
        raise InvalidRepositoryURL(f"{norm} is not a git repository (it has no object store)")
    return norm


def _is_work_tree(tree: str, gitdir: str) -> bool:
    """Whether `gitdir` is the control directory of the work tree `tree`."""
    dirs = control_dirs(tree)
    return dirs is not None and os.path.realpath(dirs[0]) == gitdir
