"""The dashboard (I/O: serves static files): a page over the public API, no build step.

`/` answers the page and `/ui/*` its assets, ECharts among them (vendored with its licence
under api/static/vendor/echarts/). Nothing here reads data: the page calls `/api/v1` itself, with
the token the user typed when reads need one, so the assets stay open like the probes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(str(resources.files("metre.api") / "static"))
# ECharts writes styles from script and its tooltips carry inline style attributes.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={**HEADERS, "Cache-Control": "no-cache"})


def mount(app: FastAPI) -> None:
    """The page at `/`, its assets at `/ui`."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC), name="ui")
