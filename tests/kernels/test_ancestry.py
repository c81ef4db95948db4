"""The merge-base kernel: hand-made graphs on both twins; both twins equal the definition
(common ancestors that are no ancestor of another) on generated graphs, and each other."""

from __future__ import annotations

import importlib
import importlib.util
import os
from array import array
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metre import kernels
from metre.kernels import _ancestry_reference

Graph = list[list[int]]
"""Parents of each commit, by number; every parent below its child."""


def compiled_is_built() -> bool:
    return importlib.util.find_spec("metre.kernels._ancestry") is not None


@pytest.fixture(scope="module", params=["c", "python"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "python":
        return _ancestry_reference
    if not compiled_is_built():
        pytest.skip("metre.kernels._ancestry is not built (no C compiler at install time)")
    return importlib.import_module("metre.kernels._ancestry")


def layout(graph: Graph) -> tuple[array[int], array[int]]:
    starts, parents = array("i", [0]), array("i")
    for ps in graph:
        parents.extend(ps)
        starts.append(len(parents))
    return starts, parents


def lca(impl: ModuleType, graph: Graph, first: int, others: list[int]) -> list[int]:
    starts, parents = layout(graph)
    result: list[int] = impl.lowest_common_ancestors(starts, parents, first, others)
    return result


def ancestors(graph: Graph, c: int) -> set[int]:
    out, stack = set(), [c]
    while stack:
        x = stack.pop()
        if x not in out:
            out.add(x)
            stack.extend(graph[x])
    return out


def by_definition(graph: Graph, first: int, others: list[int]) -> list[int]:
    common = ancestors(graph, first) & set().union(*(ancestors(graph, o) for o in others))
    redundant = set().union(*(ancestors(graph, c) - {c} for c in common))
    return sorted(common - redundant)


def test_a_line_and_a_fork(impl: ModuleType) -> None:
    line: Graph = [[], [0], [1], [2]]
    assert lca(impl, line, 3, [1]) == [1]
    assert lca(impl, line, 1, [3]) == [1]
    assert lca(impl, line, 2, [2]) == [2]
    fork: Graph = [[], [0], [0], [1], [2]]
    assert lca(impl, fork, 3, [4]) == [0]
    assert lca(impl, fork, 3, []) == []


def test_criss_cross_has_two_bases(impl: ModuleType) -> None:
    # 0 root; 1, 2 two sides; 3 = merge(1, 2) and 4 = merge(2, 1); 5 after 3, 6 after 4
    g: Graph = [[], [0], [0], [1, 2], [2, 1], [3], [4]]
    assert lca(impl, g, 5, [6]) == [1, 2]
    assert lca(impl, g, 5, [6, 2]) == [1, 2]


def test_unrelated_histories_have_none(impl: ModuleType) -> None:
    g: Graph = [[], [], [0], [1]]
    assert lca(impl, g, 2, [3]) == []


def test_bad_graphs_raise(impl: ModuleType) -> None:
    with pytest.raises(ValueError, match="not in the graph"):
        lca(impl, [[], [0]], 2, [0])
    with pytest.raises(ValueError, match="not in the graph"):
        lca(impl, [[], [0]], 1, [-1])
    with pytest.raises(ValueError, match="not below"):
        lca(impl, [[], [1]], 1, [0])
    starts, parents = array("i", [0, 0, 5]), array("i", [0])
    with pytest.raises(ValueError, match="out of range"):
        impl.lowest_common_ancestors(starts, parents, 1, [0])


def test_the_compiled_kernel_is_loaded_when_built() -> None:
    if os.environ.get("METRE_KERNELS", "").strip().lower() == "python":
        assert kernels.ANCESTRY_IMPLEMENTATION == "python"
    elif compiled_is_built():
        from metre.kernels import _ancestry

        assert kernels.ANCESTRY_IMPLEMENTATION == "c"
        assert kernels.lowest_common_ancestors is _ancestry.lowest_common_ancestors
    else:
        assert kernels.ANCESTRY_IMPLEMENTATION == "python"


@st.composite
def graphs(draw: st.DrawFn) -> tuple[Graph, int, list[int]]:
    """A DAG of up to 40 commits, mostly one or two parents (octopus and roots too), and
    the inputs of a search."""
    n = draw(st.integers(1, 40))
    graph: Graph = []
    for i in range(n):
        k = draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3])) if i else 0
        graph.append(draw(st.lists(st.integers(0, i - 1), max_size=k)) if i else [])
    first = draw(st.integers(0, n - 1))
    others = draw(st.lists(st.integers(0, n - 1), max_size=4))
    return graph, first, others


@settings(max_examples=500, deadline=None)
@given(case=graphs())
def test_twins_equal_the_definition(case: tuple[Graph, int, list[int]]) -> None:
    graph, first, others = case
    expected = by_definition(graph, first, others) if others else []
    assert lca(_ancestry_reference, graph, first, others) == expected
    if compiled_is_built():
        from metre.kernels import _ancestry

        assert lca(_ancestry, graph, first, others) == expected
