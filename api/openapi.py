"""What the OpenAPI document says beyond the routes, and the pages that show it.

- Security: a `bearer` HTTP scheme. The document says what this server does: with
  METRE_API_TOKENS set, writes require it, reads too with METRE_READ_REQUIRES_TOKEN (else they
  accept it), and those operations list the 401 the guard answers (api/security.py); without
  tokens nothing requires it and no 401 is listed. With a rate limit every operation lists its
  429. The guard never answers 403: a token is valid or it is not (there are no scopes).
- Examples on the main responses (a repository, a list of them, a metric).
- `/docs` (Swagger UI) and `/redoc` (ReDoc) load their scripts and styles from this server
  (api/static/vendor/, served under /ui/vendor/), never from a CDN: they work on a cluster
  without Internet access. Swagger UI's online validator badge is off for the same reason.

The document is patched after FastAPI builds it, once, so the routes stay as they are written.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.responses import HTMLResponse

from metre.api.security import OPEN_PATHS, WRITE_METHODS

VENDOR = "/ui/vendor"
SWAGGER_JS = f"{VENDOR}/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = f"{VENDOR}/swagger-ui/swagger-ui.css"
FAVICON = f"{VENDOR}/swagger-ui/favicon-32x32.png"
REDOC_JS = f"{VENDOR}/redoc/redoc.standalone.js"

DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
"""The doc pages may load nothing from elsewhere, whatever their scripts try (Swagger UI
starts from an inline script, ReDoc runs its search in a blob: worker)."""

BEARER = "bearer"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}

_REPO_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "url": "https://github.com/example/project.git",
    "branch": None,
    "state": "idle",
    "error": None,
    "head": "3f9c2b1e5d7a4c60b8e1f2a3c4d5e6f708192a3b",
    "commits": 4821,
    "progress": {"done": 4821, "total": 4821},
    "last_polled_at": "2026-11-22T10:00:03+00:00",
    "next_poll_at": "2026-11-22T10:01:03+00:00",
    "created_at": "2026-11-20T08:12:45+00:00",
}
_ACTIVITY_EXAMPLE: dict[str, Any] = {
    "repo_id": 1,
    "granularity": "month",
    "series": [
        {"period": "2024-01-01", "commits": 112, "merges": 9, "added": 5310, "removed": 2207},
        {"period": "2024-02-01", "commits": 87, "merges": 6, "added": 3120, "removed": 1904},
    ],
    "provenance": {
        "repo_id": 1,
        "head": "3f9c2b1e5d7a4c60b8e1f2a3c4d5e6f708192a3b",
        "watermark": "2026-11-22T10:00:04.120000+00:00",
        "metric": "activity",
        "version": 1,
        "params": {"granularity": "month", "from": "2024-01-01", "to": None},
    },
}
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/api/v1/repos/{repo_id}"): _REPO_EXAMPLE,
    ("post", "/api/v1/repos"): {**_REPO_EXAMPLE, "state": "pending", "head": None, "commits": 0,
                                "progress": {"done": 0, "total": 0}, "last_polled_at": None},
    ("get", "/api/v1/repos"): {"repos": [_REPO_EXAMPLE]},
    ("get", "/api/v1/repos/{repo_id}/metrics/activity"): _ACTIVITY_EXAMPLE,
}  # fmt: skip


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    if headers:
        out["headers"] = headers
    return out


def patch_document(
    doc: dict[str, Any], *, tokens: bool, read_requires_token: bool, rate_limited: bool
) -> None:
    """Add the security scheme, the 401/429 answers and the examples to `doc` (pure); `tokens`:
    METRE_API_TOKENS is set."""
    components = doc.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "One of METRE_API_TOKENS. Writes need it when tokens are configured; "
        "reads too with METRE_READ_REQUIRES_TOKEN.",
    }
    unauthorized = _error(
        "No token, or not a valid one (only when METRE_API_TOKENS is set)",
        {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}},
    )
    too_many = _error(
        "Rate limit exceeded (METRE_RATE_LIMIT, METRE_RATE_BURST)",
        {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}},
    )
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            if rate_limited:
                responses.setdefault("429", too_many)
            if path in OPEN_PATHS:
                continue
            write = method.upper() in WRITE_METHODS
            if tokens and (write or read_requires_token):
                op["security"] = [{BEARER: []}]
                responses.setdefault("401", unauthorized)
            else:
                op["security"] = [{}, {BEARER: []}]  # optional: a token is accepted, not needed
            example = EXAMPLES.get((method, path))
            if example is not None:
                for code in ("200", "201"):
                    media = responses.get(code, {}).get("content", {}).get("application/json")
                    if media is not None:
                        media["example"] = example


def install(app: FastAPI, *, tokens: bool, read_requires_token: bool, rate_limited: bool) -> None:
    """The patched document at /openapi.json and its two local viewers."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            patch_document(
                doc,
                tokens=tokens,
                read_requires_token=read_requires_token,
                rate_limited=rate_limited,
            )
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    async def swagger(_: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS,
            swagger_favicon_url=FAVICON,
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(_: Request) -> HTMLResponse:
        page = get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=REDOC_JS,
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
