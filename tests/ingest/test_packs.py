"""metre.ingest.packs against `git cat-file`: every object of packs written by fast-import and by
repack with offset deltas and with reference deltas, and what it leaves to dulwich."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from dulwich.repo import Repo

from metre import kernels
from metre.ingest.packs import PackReader
from tests.fixtures.gitrepo import git_env, run_git

TYPES = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}


def git_objects(repo: Path) -> dict[bytes, tuple[int, bytes]]:
    """Every object of `repo` as git reads it: hex sha -> (type number, content)."""
    out = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
        capture_output=True,
        check=True,
    ).stdout
    objects: dict[bytes, tuple[int, bytes]] = {}
    pos = 0
    while pos < len(out):
        eol = out.index(b"\n", pos)
        sha, kind, size = out[pos:eol].split()
        start = eol + 1
        objects[sha] = (TYPES[kind], out[start : start + int(size)])
        pos = start + int(size) + 1
    return objects


@pytest.mark.parametrize(
    "repack",
    [
        None,
        ["repack", "-adf", "--depth=50", "--window=50"],
        ["-c", "repack.useDeltaBaseOffset=false", "repack", "-adf", "--depth=20"],
    ],
    ids=["fast-import", "ofs-delta", "ref-delta"],
)
def test_every_object_equals_git(
    tmp_path: Path, history_factory: Callable[..., Path], repack: list[str] | None
) -> None:
    bare = tmp_path / "bare.git"
    env = git_env(tmp_path / "home")
    run_git(tmp_path, "clone", "-q", "--bare", str(history_factory(300, 0)), str(bare), env=env)
    if repack:
        run_git(bare, *repack, env=env)
    expected = git_objects(bare)
    with Repo(str(bare)) as repo:
        reader = PackReader(repo.object_store)
        try:
            got = {sha: reader.get_raw(sha) for sha in expected}
        finally:
            reader.close()
    assert got == expected
    assert len(expected) > 1000


def test_loose_objects_and_unknown_names_are_left_to_dulwich(tmp_path: Path) -> None:
    env = git_env(tmp_path / "home")
    repo_dir = tmp_path / "r"
    run_git(tmp_path, "init", "-q", str(repo_dir), env=env)
    (repo_dir / "a").write_bytes(b"x\n")
    run_git(repo_dir, "add", "a", env=env)
    blob = run_git(repo_dir, "rev-parse", ":a", env=env).strip()
    with Repo(str(repo_dir)) as repo:
        reader = PackReader(repo.object_store)
        assert reader.get_raw(blob) is None  # loose: not in a pack
        assert reader.get_raw(b"0" * 40) is None
        assert reader.get_raw(b"not hex") is None
        run_git(repo_dir, "commit", "-qm", "m", env=env)
        run_git(repo_dir, "repack", "-ad", env=env)
        assert reader.get_raw(blob) is None  # a pack made after the reader: dulwich's
        fresh = PackReader(repo.object_store)
        assert fresh.get_raw(blob) == (3, b"x\n")
        fresh.close()
        reader.close()


def test_dropping_mapped_pages_keeps_reads_right(
    tmp_path: Path, history_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packs' pages are dropped from the process every few reads (RSS bound): the objects
    read afterwards come back from the page cache unchanged."""
    import metre.ingest.packs

    monkeypatch.setattr(metre.ingest.packs, "_TRIM_BYTES", 1)
    repo_path = history_factory(120, 3)
    expected = git_objects(repo_path)
    trims = 0
    with Repo(str(repo_path)) as repo:
        reader = PackReader(repo.object_store)
        for pack in reader._packs:
            original = pack.trim

            def counted(original: Callable[[], None] = original) -> None:
                nonlocal trims
                trims += 1
                original()

            monkeypatch.setattr(pack, "trim", counted)
        try:
            got = {sha: reader.get_raw(sha) for sha in expected}
        finally:
            reader.close()
    packed = {sha: v for sha, v in got.items() if v is not None}
    assert packed
    assert all(expected[sha] == v for sha, v in packed.items())
    assert trims > 10  # dropped many times, read again after each


def test_readers_share_mappings_and_resolved_objects(
    tmp_path: Path, history_factory: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second reader of the same packs (the next poll) maps nothing again and finds the
    objects the first one resolved without inflating an entry."""
    import metre.ingest.packs

    bare = tmp_path / "bare.git"
    env = git_env(tmp_path / "home")
    run_git(tmp_path, "clone", "-q", "--bare", str(history_factory(120, 1)), str(bare), env=env)
    run_git(bare, "repack", "-adf", "--depth=50", "--window=50", env=env)
    expected = git_objects(bare)
    metre.ingest.packs.forget_resolved()
    with Repo(str(bare)) as repo:
        first = PackReader(repo.object_store)
        assert {sha: first.get_raw(sha) for sha in expected} == expected
        entries = 0
        real = kernels.pack_entry

        def counted(data: bytes, offset: int) -> tuple[int, bytes, int | bytes | None]:
            nonlocal entries
            entries += 1
            return real(data, offset)

        monkeypatch.setattr(kernels, "pack_entry", counted)
        second = PackReader(repo.object_store)
        assert [p is q for p, q in zip(first._packs, second._packs, strict=True)] == [True]
        assert {sha: second.get_raw(sha) for sha in expected} == expected
        assert entries == 0
        metre.ingest.packs.forget_resolved()
        third = PackReader(repo.object_store)
        assert {sha: third.get_raw(sha) for sha in expected} == expected
        assert entries > 0  # forgotten: read from the pack again, and still right
        for r in (first, second, third):
            r.close()


def test_a_pack_replaced_by_a_repack_is_read_from_the_new_file(
    tmp_path: Path, history_factory: Callable[..., Path]
) -> None:
    """The process keeps packs mapped between readers, by file identity: after a repack the
    next reader maps the new pack (the old mapping is dropped) and reads what git reads."""
    import metre.ingest.packs

    bare = tmp_path / "bare.git"
    env = git_env(tmp_path / "home")
    run_git(tmp_path, "clone", "-q", "--bare", str(history_factory(80, 2)), str(bare), env=env)
    with Repo(str(bare)) as repo:
        reader = PackReader(repo.object_store)
        old = [p.path for p in reader._packs]
        reader.close()
    run_git(bare, "repack", "-adf", "--depth=10", env=env)
    expected = git_objects(bare)
    with Repo(str(bare)) as repo:
        reader = PackReader(repo.object_store)
        try:
            assert {sha: reader.get_raw(sha) for sha in expected} == expected
        finally:
            reader.close()
    mapped = [p.path for p in metre.ingest.packs._MAPPED._packs.values()]
    assert old
    assert not any(p in mapped for p in old if not p.exists())


def _mapped_files() -> str:
    return Path("/proc/self/maps").read_text()


def test_the_packs_of_a_deleted_mirror_are_unmapped_at_once(
    tmp_path: Path, history_factory: Callable[..., Path]
) -> None:
    """A removed repository's mirror is deleted, but the process keeps its packs mapped for
    the next reader, which never comes: the deleted files keep their disk space until 64
    other packs push them out. `forget_gone_packs` unmaps them."""
    import gc

    from metre.ingest.packs import forget_gone_packs

    bare = tmp_path / "removed.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(history_factory(80, 2)), str(bare),
            env=git_env(tmp_path / "home"))  # fmt: skip
    kept = tmp_path / "kept.git"
    run_git(
        tmp_path,
        "clone",
        "-q",
        "--bare",
        "--no-local",
        str(bare),
        str(kept),
        env=git_env(tmp_path / "h"),
    )  # fmt: skip (not hard-linked: a pack file of its own)
    for path in (bare, kept):
        with Repo(str(path)) as repo:
            reader = PackReader(repo.object_store)
            assert reader.get_raw(next(iter(git_objects(path))))
            reader.close()
    packs = sorted(str(p) for p in (bare / "objects" / "pack").glob("*.pack"))
    assert packs
    assert all(p in _mapped_files() for p in packs)
    subprocess.run(["rm", "-rf", str(bare)], check=True)
    assert all(f"{p} (deleted)" in _mapped_files() for p in packs)  # its space still held

    assert forget_gone_packs() == len(packs)
    gc.collect()
    maps = _mapped_files()
    assert not any(p in maps for p in packs)
    assert str(kept / "objects" / "pack") in maps  # packs still on disk stay mapped
    assert forget_gone_packs() == 0
