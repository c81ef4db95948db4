"""JSON responses rendered by orjson, and the error body every 4xx/5xx shares (pure)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """orjson renders dates, datetimes and dataclasses natively, in one C call, where FastAPI's
    jsonable_encoder path walks every value of the body in Python first.

    A JSONResponse subclass so that the OpenAPI document describes bodies by their models
    (with a bare Response class FastAPI adds ``"type": "string"`` to every response schema,
    which no JSON object satisfies: found by tests/api/test_fuzz.py).
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def error_body(status: int, message: str, detail: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"status": status, "message": message}}
    if detail is not None:
        body["error"]["detail"] = detail
    return body
