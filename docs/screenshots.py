"""Take the dashboard screenshots in docs/img/ from a real `metre up` (run by hand, not in CI).

    .venv/bin/python docs/screenshots.py [REPOSITORY]

Starts `metre up` on a temporary data directory and a free port, registers REPOSITORY (a local
path; default: the repository this script lives in), waits until it is ingested, then opens the
overview and the repository page in headless Chromium (/usr/bin/chromium, driven by Playwright)
at a desktop and a phone size. The page sets `body[data-ready=true]` once its charts are drawn.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

HERE = Path(__file__).resolve().parent
OUT = HERE / "img"
CHROMIUM = "/usr/bin/chromium"
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ingested(base: str, path: str, deadline: float) -> int:
    """Register `path` and wait until its first poll has been applied; its id."""
    with httpx.Client(base_url=base, timeout=10) as client:
        while True:
            try:
                client.get("/healthz").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("metre up did not start in time") from None
                time.sleep(0.3)
        answer = client.post("/api/v1/repos", json={"url": path})
        if answer.status_code not in (200, 201):
            raise SystemExit(f"registration refused: {answer.text}")
        repo_id = int(answer.json()["id"])
        while time.monotonic() < deadline:
            repo = client.get(f"/api/v1/repos/{repo_id}").json()
            if repo.get("state") == "idle" and repo.get("last_polled_at"):
                return repo_id
            time.sleep(0.5)
    raise SystemExit("the repository was not ingested in time")


async def shoot(base: str, repo_id: int) -> list[Path]:
    OUT.mkdir(exist_ok=True)
    taken: list[Path] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        for size, viewport in SIZES.items():
            page = await browser.new_page(viewport=viewport)  # type: ignore[arg-type]
            for name, hash_ in (("overview", ""), ("repository", f"#/repos/{repo_id}")):
                await page.goto(f"{base}/{hash_}")
                await page.wait_for_selector("body[data-ready=true]", timeout=30_000)
                await page.wait_for_timeout(800)  # ECharts' entry animation
                target = OUT / f"dashboard-{name}-{size}.png"
                await page.screenshot(path=str(target), full_page=size == "desktop")
                taken.append(target)
            await page.close()
        await browser.close()
    return taken


def main() -> int:
    repository = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent).resolve()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="metre-shots-") as data:
        env = {**os.environ, "METRE_DATA_DIR": data, "METRE_PORT": str(port)}
        env.pop("METRE_API_TOKENS", None)
        metre = subprocess.Popen([sys.executable, "-m", "metre", "up"], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            repo_id = wait_ingested(base, str(repository), time.monotonic() + 300)
            for path in asyncio.run(shoot(base, repo_id)):
                print(path.relative_to(HERE.parent))
        finally:
            metre.terminate()
            metre.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
