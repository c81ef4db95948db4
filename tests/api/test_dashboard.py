"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

The page is served by a real uvicorn on loopback over the in-process pipeline (real PostgreSQL,
real dulwich poller); the expected numbers of points come from the git CLI (testkit/oracle.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from metre.api.app import create_app
from metre.settings import Settings
from testkit.broker import free_port
from testkit.oracle import expected_activity, expected_authors, rollup
from testkit.pipeline import Pipeline

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
# No background traffic: the machine's network is closed and must stay unused.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dashboard-secret-token"


@dataclass
class Served:
    url: str
    problems: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve(settings: Settings, metre: Pipeline, **options: Any) -> AsyncIterator[str]:
    """A real uvicorn on 127.0.0.1 serving the app over the harness's store."""
    port = free_port()
    app = create_app(settings, metre.store, **options)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def open_page(
    browser: Browser,
    url: str,
    problems: list[str],
    requested: list[str] | None = None,
    **kw: object,
) -> Page:
    """A page that records console errors, uncaught exceptions and failed requests (and, with
    `requested`, the URL of every request it makes, from the first)."""
    page = await browser.new_page(**kw)  # type: ignore[arg-type]
    if requested is not None:
        page.on("request", lambda r: requested.append(r.url))

    def on_console(m: ConsoleMessage) -> None:
        if m.type == "error":
            problems.append(f"console: {m.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    await page.goto(url)
    return page


async def points(page: Page, card: str) -> tuple[int, int]:
    """(data-points of the card's first chart, points ECharts itself holds in its first series)."""
    chart = page.locator(f'[data-card="{card}"] .chart[data-rendered="true"]').first
    await chart.wait_for(timeout=15_000)
    declared = int(await chart.get_attribute("data-points") or -1)
    drawn = await chart.evaluate(
        "node => echarts.getInstanceByDom(node).getOption().series[0].data.length"
    )
    return declared, int(drawn)


async def test_pages_render_what_git_says(
    metre_api: Pipeline, random_repo: Path, browser: Browser
) -> None:
    repo_id = await metre_api.ingest(random_repo)
    problems: list[str] = []
    async with serve(Settings(), metre_api) as url:
        page = await open_page(browser, url + "/", problems)
        row = page.locator(f'#repos tr[data-repo="{repo_id}"]')
        await row.wait_for()
        assert await row.locator(".state").inner_text() == "idle"

        await row.get_by_role("link").click()
        await page.locator("body[data-ready=true]").wait_for(state="attached")
        # Ready means every card has its data (or its error), not its placeholder.
        assert await page.get_by_text("loading…").count() == 0
        days = await asyncio.to_thread(expected_activity, random_repo)
        for granularity in ("month", "week", "day"):
            if granularity != "month":
                card = page.locator('[data-card="Activity"]')
                await card.locator(f'button[data-granularity="{granularity}"]').click()
                await card.locator(
                    f'button[data-granularity="{granularity}"][aria-pressed="true"]'
                ).wait_for()
                await page.wait_for_timeout(50)
            want = len(rollup(days, granularity))
            async with asyncio.timeout(15):
                while (got := await points(page, "Activity")) != (want, want):
                    await asyncio.sleep(0.05)
            assert got == (want, want), granularity

        authors = len(await asyncio.to_thread(expected_authors, random_repo))
        assert await points(page, "Top authors") == (min(10, authors),) * 2
        assert await points(page, "Punch card (author's own time)") == (7 * 24,) * 2
        factor = page.locator("#truck-factor")
        await factor.wait_for()
        api = (await metre_api.client.get(f"/api/v1/repos/{repo_id}/metrics/truck-factor")).json()
        assert await factor.inner_text() == str(api["truck_factor"])
        json_links = page.get_by_role("link", name="JSON")
        assert await json_links.count() >= 10
        await page.close()
    assert problems == []


async def test_register_poll_and_errors_from_the_page(
    metre_api: Pipeline, random_repo: Path, awkward_repo: Path, browser: Browser
) -> None:
    await metre_api.ingest(random_repo)
    problems: list[str] = []
    settings = Settings(allow_local_paths=True)
    async with serve(settings, metre_api) as url:
        page = await open_page(browser, url + "/", problems)
        await page.locator("#repos tbody tr").first.wait_for()
        # A bad URL: the API's own message is shown, and nothing is registered.
        async with httpx.AsyncClient(base_url=url) as client:
            refused = await client.post("/api/v1/repos", json={"url": "relative/path"})
        assert refused.status_code == 422
        await page.fill("#reg-url", "relative/path")
        await page.click("#register button[type=submit]")
        message = page.locator("#register .form-msg.err")
        await message.wait_for()
        assert await message.inner_text() == refused.json()["error"]["message"]
        assert len(await metre_api.store.list_repos()) == 1

        await page.fill("#reg-url", str(awkward_repo))
        await page.click("#register button[type=submit]")
        await page.locator("#register .form-msg:not(.err)").filter(has_text="registered").wait_for()
        repos = await metre_api.store.list_repos()
        assert sorted(r.url for r in repos) == sorted([str(random_repo), str(awkward_repo)])
        new = next(r for r in repos if r.url == str(awkward_repo))
        await page.locator(f'#repos tr[data-repo="{new.id}"]').wait_for()

        # Poll now, from the repository's page.
        await page.goto(f"{url}/#/repos/{new.id}")
        await page.locator("body[data-ready=true]").wait_for(state="attached")
        query = "SELECT poll_requested FROM repos WHERE id = $1"
        await metre_api.store._pool.execute("UPDATE repos SET poll_requested = false")
        await page.click("#poll")
        await page.locator(".form-msg").filter(has_text="poll requested").wait_for()
        assert await metre_api.store._pool.fetchval(query, new.id) is True

        # Whether pushes can reach it: the secret itself is never on the page.
        assert await page.locator("#repo-webhook").inner_text() == "none"
        async with httpx.AsyncClient(base_url=url) as client:
            set_secret = await client.patch(
                f"/api/v1/repos/{new.id}", json={"webhook_secret": "s3cret-hook-key"}
            )
        assert set_secret.status_code == 200, set_secret.text
        await page.reload()
        await page.locator("body[data-ready=true]").wait_for(state="attached")
        assert await page.locator("#repo-webhook").inner_text() == "secret set"
        assert "s3cret-hook-key" not in await page.content()
        await page.close()
    # The browser reports the refused registration itself; nothing else went wrong.
    assert problems == [
        "console: Failed to load resource: the server responded with a status of 422 "
        "(Unprocessable Entity)"
    ]


async def test_token_required_for_reads(
    metre_api: Pipeline, random_repo: Path, browser: Browser
) -> None:
    repo_id = await metre_api.ingest(random_repo)
    problems: list[str] = []
    settings = Settings(api_tokens=TOKEN, read_requires_token=True)  # type: ignore[arg-type]
    async with serve(settings, metre_api) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            for asset in ("/", "/ui/app.js", "/ui/style.css", "/ui/vendor/echarts/echarts.min.js"):
                assert (await client.get(asset)).status_code == 200, asset
            assert (await client.get("/api/v1/repos")).status_code == 401
        page = await open_page(browser, url + "/", [])
        banner = page.locator("#banner")
        await banner.filter(has_text="token").wait_for()
        await page.fill("#token", TOKEN)
        await page.press("#token", "Enter")
        await page.locator(f'#repos tr[data-repo="{repo_id}"]').wait_for()
        assert await banner.is_hidden()
        await page.close()
    assert problems == []


async def test_keyboard_and_phone(metre_api: Pipeline, random_repo: Path, browser: Browser) -> None:
    await metre_api.ingest(random_repo)
    problems: list[str] = []
    async with serve(Settings(), metre_api) as url:
        page = await open_page(
            browser, url + "/", problems, viewport={"width": 390, "height": 844}, is_mobile=True
        )
        await page.locator("#repos tbody tr").first.wait_for()
        width = await page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width[0] <= width[1], width
        # The skip link comes first; the sort buttons are reachable and work from the keyboard.
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        header = page.locator("#repos th").nth(1)
        assert await header.get_attribute("aria-sort") == "none"
        await header.locator("button").focus()
        await page.keyboard.press("Enter")
        await (
            page.locator("#repos th")
            .nth(1)
            .and_(page.locator('[aria-sort="ascending"]'))
            .wait_for()
        )
        await page.close()
    assert problems == []


async def test_notifications_on_the_overview(metre_api: Pipeline, browser: Browser) -> None:
    from metre.processors.notify_rules import Alert
    from metre.processors.notify_store import NotifyStore

    notes = NotifyStore(metre_api.store.pool)
    target = await notes.add_target("slack", "https://hooks.example.com/T0/B0/secret", "team")
    rule = await notes.add_rule("dead_letters", None, 1.0, target["id"])
    await notes.record([], [Alert(rule["id"], target["id"], None, "dead_letters", False, "2 new")])
    await notes.make_digests(0, datetime.now(UTC))
    problems: list[str] = []
    async with serve(Settings(), metre_api) as url:
        page = await open_page(browser, url + "/", problems)
        card = page.locator("#notifications")
        await card.locator("td", has_text="pending").wait_for()
        text = await card.inner_text()
        assert "dead_letters" in text
        assert "slack “team” https://hooks.example.com/…" in text
        assert "secret" not in text
        await page.close()
    assert problems == []


async def test_pipeline_panel_shows_the_consumer_lag(metre_api: Pipeline, browser: Browser) -> None:
    from metre.contracts.bus import Message
    from metre.processors.lag import GroupLag

    await metre_api.bus.ensure_topics(["t.lagged"])
    for i in range(3):
        await metre_api.bus.publish("t.lagged", [Message(f"{i}".encode(), b"event")])
    lag = GroupLag(metre_api.bus, "t.lagged", "t-nobody-reads")
    problems: list[str] = []
    async with serve(Settings(), metre_api, lag=lag) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            body = (await client.get("/api/v1/pipeline")).json()
        assert body["lag"] == {"commits": 3}
        page = await open_page(browser, url + "/", problems)
        await page.locator("#lag").filter(has_text="3").wait_for()
        await page.close()
    # Without a way to ask the bus, the lag is unknown, not zero.
    assert (await metre_api.client.get("/api/v1/pipeline")).json()["lag"] == {"commits": None}
    assert problems == []
