"""The authorship kernel: worked examples on both twins, and compiled == reference properties."""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metre import kernels
from metre.kernels import _authorship_reference as ref

PROPERTY = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def compiled_is_built() -> bool:
    return importlib.util.find_spec("metre.kernels._authorship") is not None


@pytest.fixture(scope="session", params=["c", "python"])
def twin(request: pytest.FixtureRequest) -> ModuleType:
    """A module with ``authorship`` and ``truck_factor``: one of the two twins."""
    if request.param == "python":
        return ref
    if not compiled_is_built():
        pytest.skip("metre.kernels._authorship is not built (no C compiler at install time)")
    return importlib.import_module("metre.kernels._authorship")


def test_compiled_twin_is_the_one_loaded() -> None:
    if os.environ.get("METRE_KERNELS", "").strip().lower() == "python":
        assert kernels.AUTHORSHIP_IMPLEMENTATION == "python"
        assert kernels.truck_factor is ref.truck_factor
    elif compiled_is_built():
        assert kernels.AUTHORSHIP_IMPLEMENTATION == "c"
        assert kernels.authorship is importlib.import_module("metre.kernels._authorship").authorship


# ----------------------------------------------------------------------------- worked examples


def test_doa_of_a_sole_creator(twin: ModuleType) -> None:
    # One file, one author who created it with 3 commits: 3.293 + 1.098 + 0.164 * 3.
    doas, is_author = twin.authorship([0], [7], [1], [3])
    assert doas == [3.293 + 1.098 + 0.164 * 3 - 0.321 * math.log1p(0)]
    assert is_author == [True]


def test_normalised_and_absolute_thresholds(twin: ModuleType) -> None:
    # File 0: creator with 1 commit, another author with 10.
    #   creator: 3.293 + 1.098 + 0.164 - 0.321 ln 11 = 3.785...
    #   other:   3.293 + 1.64 - 0.321 ln 2 = 4.710...   creator / other = 0.80 > 0.75: both.
    # File 1: a creator with 40 commits; an author with 1 commit: 3.457 - 0.321 ln 41 < 3.293.
    doas, is_author = twin.authorship([0, 0, 1, 1], [0, 1, 0, 1], [1, 0, 1, 0], [1, 10, 40, 1])
    want = [
        3.293 + 1.098 + 0.164 - 0.321 * math.log1p(10),
        3.293 + 0.164 * 10 - 0.321 * math.log1p(1),
        3.293 + 1.098 + 0.164 * 40 - 0.321 * math.log1p(1),
        3.293 + 0.164 - 0.321 * math.log1p(40),
    ]
    assert doas == pytest.approx(want, abs=1e-12)
    assert is_author == [True, True, True, False]


def test_below_normalised_threshold_is_not_an_author(twin: ModuleType) -> None:
    # 20 commits against 1: the one-commit author is far below 0.75 of the leader.
    _, is_author = twin.authorship([3, 3], [0, 1], [1, 0], [20, 1])
    assert is_author == [True, False]


def test_truck_factor_greedy_order(twin: ModuleType) -> None:
    # 4 files. Author 2 authors 3 files, author 0 two, author 1 one (file 3 only).
    files = [0, 1, 2, 0, 3, 3]
    authors = [2, 2, 2, 0, 0, 1]
    # Remove 2: files 1, 2 orphaned (2 of 4: not more than half). Remove 0: file 0 orphaned
    # (3 of 4 > half): stop. TF = 2.
    assert twin.truck_factor(4, files, authors) == [2, 0]


def test_truck_factor_ties_take_the_smaller_id(twin: ModuleType) -> None:
    assert twin.truck_factor(2, [0, 1], [5, 3]) == [3, 5]


def test_truck_factor_zero_when_most_files_have_no_author(twin: ModuleType) -> None:
    assert twin.truck_factor(3, [0], [0]) == []
    assert twin.truck_factor(0, [], []) == []


def test_truck_factor_everyone_needed(twin: ModuleType) -> None:
    # Two files each with one distinct author: removing one orphans 1 of 2 (half): go on.
    assert twin.truck_factor(2, [0, 1], [0, 1]) == [0, 1]


@pytest.mark.parametrize(
    "args",
    [
        ([0, 1], [0], [0], [0]),  # lengths differ
        ([1, 0], [0, 0], [0, 0], [1, 1]),  # not sorted by file
        ([0], [0], [0], [-1]),  # negative count
        ([-1], [0], [0], [1]),  # negative id
    ],
)
def test_authorship_rejects_bad_input(twin: ModuleType, args: tuple[list[int], ...]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message differs by twin; the type not)
        twin.authorship(*args)


@pytest.mark.parametrize(
    "args",
    [(1, [0, 0], [0]), (1, [1], [0]), (-1, [], []), (2, [0], [-1])],
)
def test_truck_factor_rejects_bad_input(twin: ModuleType, args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        twin.truck_factor(*args)


# ------------------------------------------------------------------------------- properties


@st.composite
def authorship_rows(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], list[int]]:
    """Rows grouped by file; change counts from tiny to huge (huge AC drives DOA negative)."""
    files: list[int] = []
    authors: list[int] = []
    created: list[int] = []
    changes: list[int] = []
    file_id = 0
    for _ in range(draw(st.integers(0, 12))):
        file_id += draw(st.integers(0, 3))
        for a in draw(st.lists(st.integers(0, 8), min_size=1, max_size=6, unique=True)):
            files.append(file_id)
            authors.append(a)
            created.append(draw(st.sampled_from([0, 0, 1, 2])))
            changes.append(draw(st.one_of(st.integers(0, 40), st.integers(0, 10**7))))
    return files, authors, created, changes


@PROPERTY
@given(rows=authorship_rows())
def test_authorship_compiled_equals_reference(
    rows: tuple[list[int], list[int], list[int], list[int]],
) -> None:
    if not compiled_is_built():
        pytest.skip("metre.kernels._authorship is not built")
    c = importlib.import_module("metre.kernels._authorship")
    assert c.authorship(*rows) == ref.authorship(*rows)  # bit for bit


@PROPERTY
@given(rows=authorship_rows())
def test_every_file_with_a_qualifying_leader_has_an_author(
    rows: tuple[list[int], list[int], list[int], list[int]],
) -> None:
    files, _, _, _ = rows
    doas, is_author = ref.authorship(*rows)
    for f in set(files):
        idx = [i for i in range(len(files)) if files[i] == f]
        best = max(doas[i] for i in idx)
        assert any(is_author[i] for i in idx) == (best >= ref.AUTHOR_MIN_DOA)


@st.composite
def authorship_pairs(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    n_files = draw(st.integers(0, 30))
    if n_files == 0:
        return 0, [], []
    pairs = draw(st.lists(st.tuples(st.integers(0, n_files - 1), st.integers(0, 12)), max_size=80))
    return n_files, [f for f, _ in pairs], [a for _, a in pairs]


@PROPERTY
@given(case=authorship_pairs())
def test_truck_factor_compiled_equals_reference(case: tuple[int, list[int], list[int]]) -> None:
    if not compiled_is_built():
        pytest.skip("metre.kernels._authorship is not built")
    c = importlib.import_module("metre.kernels._authorship")
    assert c.truck_factor(*case) == ref.truck_factor(*case)


@PROPERTY
@given(case=authorship_pairs())
def test_truck_factor_stops_exactly_past_half(case: tuple[int, list[int], list[int]]) -> None:
    n_files, files, authors = case
    removed = ref.truck_factor(n_files, files, authors)

    def orphans(gone: set[int]) -> int:
        covered = {f for f, a in zip(files, authors, strict=True) if a not in gone}
        return n_files - len(covered)

    if removed:
        assert 2 * orphans(set(removed[:-1])) <= n_files  # the last removal was still needed
    assert 2 * orphans(set(removed)) > n_files or n_files == 0
    counts = {a: authors.count(a) for a in set(authors)}
    ranked = sorted(counts, key=lambda a: (-counts[a], a))
    assert removed == ranked[: len(removed)]
