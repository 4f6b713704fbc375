"""Browser fixtures: the YouTube stand-in, Playwright, and one Chromium per simulated user."""

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Playwright, async_playwright

from tests.browser import harness
from tests.browser.harness import ExtBrowser, StandIn
from tests.support.system import System


@pytest.fixture(scope="session")
def standin(workdir: Path) -> Iterator[StandIn]:
    harness.ensure_system_packages()
    server = StandIn(harness.make_video(), workdir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as p:
        yield p


@pytest.fixture(scope="module")
async def launch(playwright: Playwright, standin: StandIn, system: System) -> AsyncIterator[object]:
    """launch(name) → a Chromium with the extension, pointed at the test's gateway and signed
    in as guest `name` through the popup (unless sign_in=False). Every browser closes at the
    end of the module."""
    started: list[ExtBrowser] = []

    async def _launch(name: str, sign_in: bool = True) -> ExtBrowser:
        browser = await harness.launch(
            playwright, name, standin.port, harness.temp_profile(name.lower())
        )
        started.append(browser)
        if sign_in:
            await harness.set_server(browser, system.base_url)
            popup = await browser.popup()
            await browser.sign_in(popup, name)
            await popup.close()
        return browser

    yield _launch
    for browser in started:
        with contextlib.suppress(Exception):
            await browser.close()
        if browser.user_dir is not None:
            shutil.rmtree(browser.user_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def trio(launch: object) -> list[ExtBrowser]:
    """Three users, Ann, Ben and Cat, each in their own Chromium, signed in."""
    return list(await asyncio.gather(*(launch(n) for n in ("Ann", "Ben", "Cat"))))  # type: ignore[operator]
