"""Pagination shared by the list endpoints (pure): `limit` / `offset` in, `total` out.

Repositories and authors answer every row when `limit` is omitted (what clients such as the
dashboard and `metre status` read), one page otherwise; the body's `total` counts every row
either way, so a client knows when it has seen them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from fastapi import Query

T = TypeVar("T")

PageLimit = Annotated[
    int | None, Query(ge=1, le=1000, description="Rows returned (1 to 1000); every row if omitted")
]
PageOffset = Annotated[int, Query(ge=0, le=2**31 - 1, description="Rows skipped")]


def page(rows: Sequence[T], limit: int | None, offset: int) -> list[T]:
    """The rows of one page: `limit` rows (all when None) after `offset`."""
    end = None if limit is None else offset + limit
    return list(rows[offset:end])
