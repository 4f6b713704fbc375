"""Portal fixtures: a system of their own and one headless Chromium (Debian's, installed by the
extension tests' helper when missing).

The system has its own bus and database, so the directory, the admin overview and the figures
show only what these tests make; Google sign-in goes to a local OpenID Connect provider, and
ADMIN_EMAILS names the admin account, so admins get their token the way production's do."""

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Playwright
from psycopg import sql
from sqlalchemy.engine import make_url

from services.common import devstack
from tests.browser import harness
from tests.conftest import make_system
from tests.support.client import WsClient, guest
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, serve
from tests.support.system import System, migrate

ADMIN_EMAIL = "boss@example.com"
GRAFANA_URL = "https://grafana.example.com/d/sharetube"
SCREENSHOTS = harness.SCREENSHOTS
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
# The flags the brief fixes for a headless Chromium in this container.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def fresh_database(server_url: str, name: str) -> str:
    """A new, migrated database on the session's PostgreSQL."""
    url = make_url(server_url)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    database_url = url.set(database=name).render_as_string(hide_password=False)
    migrate(database_url)
    return database_url


@pytest.fixture(scope="package")
def oidc() -> Iterator[OidcProvider]:
    with serve(OidcProvider()) as provider:
        yield provider


@pytest.fixture(scope="package")
def portal_system(infra: dict[str, str], workdir: Path, oidc: OidcProvider) -> Iterator[System]:
    nats, nats_url = devstack.start_nats(workdir / "nats-portals")
    port = devstack.free_port()
    base = f"http://127.0.0.1:{port}"
    oidc.redirect_uris[CLIENT_ID] = {f"{base}/auth/google/callback"}
    env = {
        **infra,
        "NATS_URL": nats_url,
        "DATABASE_URL": fresh_database(infra["DATABASE_URL"], "sharetube_portals"),
        "GOOGLE_CLIENT_ID": CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_ISSUER": oidc.issuer,
        "BACKEND_BASE_URL": base,
        "ADMIN_EMAILS": ADMIN_EMAIL,
        "GRAFANA_URL": GRAFANA_URL,
    }
    system = make_system(env, workdir, "portals")
    system.port = port
    try:
        yield system.start({"auth": 1, "rooms": 1, "queue": 1, "chat": 1, "gateway": 1})
    finally:
        system.stop()
        nats.stop()


@pytest.fixture(scope="package")
async def chromium(playwright: Playwright) -> AsyncIterator[Browser]:
    harness.ensure_system_packages()
    browser = await playwright.chromium.launch(
        executable_path=str(harness.CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        await browser.close()


@pytest.fixture
async def contexts(chromium: Browser) -> AsyncIterator[dict[str, BrowserContext]]:
    """A desktop (1280×800) and a phone (360×740, touch) browser context, each with its own
    storage, so each signs in on its own; closed after the test."""
    desktop = await chromium.new_context(viewport=DESKTOP)
    phone = await chromium.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    errors: list[str] = []  # uncaught exceptions in any page: the test fails on them
    for context in (desktop, phone):
        context.on("page", lambda page: page.on("pageerror", lambda e: errors.append(str(e))))
    try:
        yield {"desktop": desktop, "phone": phone}
    finally:
        await desktop.close()
        await phone.close()
    assert errors == []


@pytest.fixture
async def clients(portal_system: System) -> AsyncIterator[Any]:
    """connect(name) → a signed-in guest's WsClient on the portal system; all closed after."""
    opened: list[WsClient] = []

    async def connect(name: str) -> WsClient:
        token, user = guest(portal_system.base_url, name)
        client = await WsClient.connect(portal_system.ws_url, token, name)
        client.user = user  # type: ignore[attr-defined]
        client.token = token  # type: ignore[attr-defined]
        opened.append(client)
        return client

    yield connect
    for client in opened:
        await client.close()


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"portal-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in_as_guest(page: Page, name: str) -> None:
    await page.get_by_label("Your name").fill(name)
    await page.get_by_role("button", name="Continue as guest").click()


async def use_token(page: Page, url: str, token: str) -> None:
    """Open `url` signed in with `token` (as the pages keep it, in localStorage)."""
    await page.goto(url)
    await page.evaluate("t => localStorage.setItem('sharetube.token', t)", token)
    await page.reload()


# A page audit run in the browser: form fields without a label, controls without a name, and
# visible text below WCAG AA contrast (4.5:1, 3:1 for large text) against its real backdrop.
AUDIT_JS = """() => {
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'
      && !el.closest('.visually-hidden, [hidden]');
  };
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const backdrop = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const problems = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden' || !visible(el)) continue;
    if (!el.labels?.length && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) {
      problems.push(`no label: ${el.outerHTML.slice(0, 80)}`);
    }
  }
  for (const el of document.querySelectorAll('button, a[href]')) {
    if (!visible(el)) continue;
    const name = (el.getAttribute('aria-label') || el.textContent || el.querySelector('img[alt]')?.alt || '').trim();
    if (!name) problems.push(`no name: ${el.outerHTML.slice(0, 80)}`);
  }
  for (const el of document.querySelectorAll('body *')) {
    const text = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!text || !visible(el) || el.disabled || el.closest('[disabled]')) continue;
    const s = getComputedStyle(el);
    const size = parseFloat(s.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
    const a = lum(rgb(s.color).slice(0, 3));
    const b = lum(backdrop(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)}: ${el.tagName} "${el.textContent.trim().slice(0, 30)}"`);
  }
  return problems;
}"""


async def audit(page: Page) -> list[str]:
    """The audit's findings in the light and the dark colour scheme (the pages follow the
    system's); the page is left in light."""
    problems: list[str] = []
    for scheme in ("dark", "light"):
        await page.emulate_media(color_scheme=scheme)
        problems += [f"{scheme}: {p}" for p in await page.evaluate(AUDIT_JS)]
    return problems


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)[:2000]
