"""A metric's query parameters as a FastAPI dependency, generated from its spec.

Each `Param` of a `MetricSpec` (processors/metrics/spec.py) becomes one query parameter with
its type, default, bounds, choices and description, so FastAPI validates it (422 with the
usual body), the OpenAPI document lists it, and the catalogue shows the same declaration. The
dependency answers the values by parameter name (`from`, not a Python-safe spelling).
"""

from __future__ import annotations

import functools
import inspect
import keyword
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import Query

from metre.processors.metrics.spec import MetricSpec, Param

Values = dict[str, Any]
"""The request's parameter values, by parameter name."""

_TYPES: dict[str, Any] = {"integer": int, "string": str, "boolean": bool, "date": date}


def python_type(p: Param) -> Any:
    """The annotation FastAPI validates `p` with: its JSON type, closed by its choices,
    optional when omitting it means None."""
    t: Any = Literal.__getitem__(p.choices) if p.choices is not None else _TYPES[p.type]
    return t | None if p.query_default is None else t


def _identifier(name: str) -> str:
    ident = name.replace("-", "_")
    return ident + "_" if keyword.iskeyword(ident) else ident


def _parameter(p: Param) -> inspect.Parameter:
    ident = _identifier(p.name)
    query = Query(
        alias=p.name if ident != p.name else None,
        description=p.description,
        ge=p.ge,
        le=p.le,
        min_length=p.min_length,
        max_length=p.max_length,
    )
    return inspect.Parameter(
        ident,
        inspect.Parameter.KEYWORD_ONLY,
        default=p.query_default,
        annotation=Annotated[python_type(p), query],
    )


@functools.cache
def query(spec: MetricSpec) -> Callable[..., Values]:
    """The dependency that reads and validates `spec`'s parameters."""
    names = {_identifier(p.name): p.name for p in spec.params}

    def values(**given: Any) -> Values:
        return {names[ident]: v for ident, v in given.items()}

    values.__signature__ = inspect.Signature([_parameter(p) for p in spec.params])  # type: ignore[attr-defined]
    values.__name__ = f"{_identifier(spec.name)}_params"
    return values
