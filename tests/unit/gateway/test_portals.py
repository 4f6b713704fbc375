"""The gateway's portal serving: rendered pages, versioned static files and their cache rule,
the protocol client at /static/js/, /api/config, and the pages' weight and self-containment."""

import base64
import hashlib
import json
import re
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from services.common.contracts.commands import GATEWAY_COMMANDS, ROUTES
from services.gateway import portals
from services.gateway.settings import GatewaySettings

# "No page over a few hundred KB": everything a page could load, counted uncompressed.
PAGE_BUDGET_BYTES = 200_000
IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)
ASSET_REFS = re.compile(r'(?:src|href)="(/static/[^"]+)"')
IMPORTS = re.compile(r"""(?:import|from)\s*['"]([^'"]+)['"]""")


def make_client(grafana_url: str = "") -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(portals.router)
    portals.mount(app)
    app.state.gw = SimpleNamespace(settings=GatewaySettings(grafana_url=grafana_url))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as http:
        yield http


def import_map(html: str) -> dict[str, str]:
    found = IMPORT_MAP.search(html)
    assert found, "no import map"
    imports: dict[str, str] = json.loads(found.group(1))["imports"]
    return imports


@pytest.mark.parametrize("url", sorted(portals.PAGES))
async def test_a_page_is_rendered_with_versioned_assets_and_a_strict_policy(
    client: httpx.AsyncClient, url: str
) -> None:
    page = await client.get(url)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert "{{" not in page.text and "<!--importmap-->" not in page.text
    script = IMPORT_MAP.search(page.text).group(1)  # type: ignore[union-attr]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = page.headers["content-security-policy"]
    assert f"script-src 'self' 'sha256-{digest}'" in csp
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    for ref in ASSET_REFS.findall(page.text):
        assert re.search(r"\?v=[0-9a-f]{12}$", ref), ref
    assert import_map(page.text)[portals.CLIENT_URL].startswith(portals.CLIENT_URL + "?v=")


async def test_only_the_current_version_is_cached_for_long(client: httpx.AsyncClient) -> None:
    versioned = portals.versioned("/static/common/base.css")
    long = await client.get(versioned)
    assert long.status_code == 200
    assert long.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert long.headers["content-type"].startswith("text/css")
    for stale in ("/static/common/base.css", "/static/common/base.css?v=000000000000"):
        response = await client.get(stale)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"
        assert "etag" in response.headers


async def test_the_protocol_client_is_served_from_clients_js(client: httpx.AsyncClient) -> None:
    response = await client.get(portals.versioned(portals.CLIENT_URL))
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert response.content == (portals.CLIENT_DIR / "sharetube-client.js").read_bytes()
    assert response.headers["cache-control"].startswith("public, max-age=31536000")


@pytest.mark.parametrize(
    "url",
    [
        "/static/js/test/client.test.mjs",  # the client's tests are not served
        "/static/js/live/two_clients.mjs",
        "/static/home/index.html",  # templates only rendered, never raw
        "/static/../services/gateway/app.py",
        "/static/%2e%2e/pyproject.toml",
        "/static/nothing.js",
    ],
)
async def test_what_is_not_a_portal_asset_is_not_served(
    client: httpx.AsyncClient, url: str
) -> None:
    assert (await client.get(url)).status_code == 404


@pytest.mark.parametrize(
    ("configured", "shown"),
    [
        ("", None),
        ("https://grafana.example.com/d/st", "https://grafana.example.com/d/st"),
        ("javascript:alert(1)", None),
    ],
)
async def test_config_gives_the_grafana_link_when_set(configured: str, shown: str | None) -> None:
    async with make_client(configured) as http:
        response = await http.get("/api/config")
    assert response.json() == {"grafana_url": shown}


def _module_files() -> dict[str, bytes]:
    return {url: portals.static_path(url).read_bytes() for url in portals._modules()}  # type: ignore[union-attr]


@pytest.mark.parametrize("url", sorted(portals.PAGES))
async def test_a_page_weighs_well_under_a_few_hundred_kb(
    client: httpx.AsyncClient, url: str
) -> None:
    html = (await client.get(url)).text
    assets = {ref.split("?")[0] for ref in ASSET_REFS.findall(html)}
    total = len(html.encode())
    for asset in assets:
        total += len((await client.get(asset)).content)
    total += sum(len(body) for body in _module_files().values())  # every module, an upper bound
    assert total < PAGE_BUDGET_BYTES, total


async def test_every_import_goes_through_the_import_map_and_nothing_comes_from_the_internet(
    client: httpx.AsyncClient,
) -> None:
    mapped = set(import_map((await client.get("/")).text))
    for url, body in _module_files().items():
        text = body.decode()
        for specifier in IMPORTS.findall(text):
            if specifier.startswith(("/", ".", "http")):
                assert specifier in mapped, f"{url} imports {specifier} outside the import map"
    for path in portals.PORTALS_DIR.rglob("*"):
        if path.suffix in (".html", ".css"):
            text = path.read_text()
            # Links out (YouTube, Google) are fine; loading anything from outside is not.
            assert not re.search(r"""(?:src|url\()\s*=?\s*['"]?https?:""", text), path
            assert "@import" not in text, path


def test_every_command_the_js_client_sends_is_routed() -> None:
    source = (portals.CLIENT_DIR / "sharetube-client.js").read_text()
    sent = set(re.findall(r"""(?:_command|request)\(\s*'([a-z_.]+)'""", source))
    assert {"queue.remove", "queue.move", "admin.rooms", "room.close", "play"} <= sent
    assert sent - set(ROUTES) - GATEWAY_COMMANDS == set()
