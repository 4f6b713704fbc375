"""The web portals on the gateway: `/`, `/dashboard`, `/mobile-remote`, their static files
under `/static/`, the shared JS protocol client at `/static/js/sharetube-client.js`, and the
small `/api/config` the pages read.

No build step: the pages are plain HTML, CSS and ES modules in `portals/`. What a build step
would give — cache busting — comes from the page render instead: every asset URL and every
module import is versioned by the file's content hash (`?v=<hash>`; modules through an import
map), and only a request carrying the current hash is cached for long. The pages themselves
are never cached, so a deploy is seen on the next load.
"""

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

ROOT: Final = Path(__file__).resolve().parents[2]
PORTALS_DIR: Final = ROOT / "portals"
CLIENT_DIR: Final = ROOT / "clients" / "js"
CLIENT_URL: Final = "/static/js/sharetube-client.js"

PAGES: Final = {
    "/": "home/index.html",
    "/dashboard": "dashboard/index.html",
    "/mobile-remote": "remote/index.html",
}

# A year, `immutable`: the URL changes whenever the content does.
LONG_CACHE: Final = "public, max-age=31536000, immutable"
# Unversioned requests may be cached but must be revalidated (ETag) before each use.
REVALIDATE: Final = "no-cache"

_STATIC_REF = re.compile(r"\{\{static:([A-Za-z0-9_./-]+)\}\}")
_IMPORT_MAP_MARK: Final = "<!--importmap-->"


class _Versions:
    """Content hashes of the served files, recomputed when a file's size or mtime changes
    (`make run` serves the working tree, which changes under it)."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[int, int, str]] = {}

    def of(self, path: Path) -> str:
        stat = path.stat()
        known = self._known.get(path)
        if known is not None and known[:2] == (stat.st_mtime_ns, stat.st_size):
            return known[2]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self._known[path] = (stat.st_mtime_ns, stat.st_size, digest)
        return digest


VERSIONS: Final = _Versions()


def static_path(url: str) -> Path | None:
    """The file behind a `/static/...` URL, or None."""
    if url == CLIENT_URL:
        return CLIENT_DIR / "sharetube-client.js"
    if not url.startswith("/static/"):
        return None
    path = (PORTALS_DIR / url.removeprefix("/static/")).resolve()
    if not path.is_relative_to(PORTALS_DIR.resolve()) or not path.is_file():
        return None
    return path


def versioned(url: str) -> str:
    path = static_path(url)
    if path is None:
        raise FileNotFoundError(url)
    return f"{url}?v={VERSIONS.of(path)}"


def _modules() -> list[str]:
    """Every module a page may import, by its unversioned URL."""
    urls = [CLIENT_URL]
    for path in sorted(PORTALS_DIR.rglob("*.js")):
        urls.append("/static/" + path.relative_to(PORTALS_DIR).as_posix())
    return urls


def import_map() -> str:
    """Maps each module's plain URL to its versioned one, so `import '/static/x.js'` in any
    module fetches the current content and may be cached for long."""
    return json.dumps({"imports": {url: versioned(url) for url in _modules()}}, indent=1)


def render(page: str) -> tuple[str, str]:
    """The page's HTML with versioned asset URLs and its import map, and the CSP hash of
    that inline import map (the only inline script the pages have)."""
    template = (PORTALS_DIR / page).read_text(encoding="utf-8")
    html = _STATIC_REF.sub(lambda m: versioned("/static/" + m.group(1)), template)
    script = import_map()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    html = html.replace(_IMPORT_MAP_MARK, f'<script type="importmap">{script}</script>', 1)
    return html, f"'sha256-{digest}'"


def page_headers(script_hash: str) -> dict[str, str]:
    csp = "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' {script_hash}",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",  # the API and /ws: CSP 3 'self' covers ws(s) on this host
            "base-uri 'none'",
            "object-src 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Cache-Control": REVALIDATE,
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        # A sign-in returns the token in the URL's fragment, which is never sent onwards;
        # links out (YouTube, Grafana) carry no referrer either.
        "Referrer-Policy": "no-referrer",
    }


class PortalStatic(StaticFiles):
    """StaticFiles with the portals' cache rule: a long cache only for `?v=<current hash>`.
    `only` restricts which files of the directory are served (by suffix); page templates
    (`.html`) are served by the page routes, rendered, never raw."""

    def __init__(self, directory: Path, only: tuple[str, ...]) -> None:
        super().__init__(directory=directory, check_dir=False)
        self.only = only

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not path.endswith(self.only):
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            wanted = _query_version(scope)
            full, _stat = self.lookup_path(path)
            current = VERSIONS.of(Path(full)) if full else None
            long_cache = wanted is not None and wanted == current
            response.headers["Cache-Control"] = LONG_CACHE if long_cache else REVALIDATE
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _query_version(scope: Scope) -> str | None:
    query = scope.get("query_string", b"").decode("latin-1")
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == "v" and value:
            return value
    return None


router = APIRouter()


def _page_route(url: str, page: str) -> None:
    async def serve_page() -> HTMLResponse:
        html, script_hash = render(page)
        return HTMLResponse(html, headers=page_headers(script_hash))

    serve_page.__name__ = f"portal_{page.split('/')[0]}"
    router.add_api_route(url, serve_page, methods=["GET"], include_in_schema=False)


for _url, _page in PAGES.items():
    _page_route(_url, _page)


@router.get("/api/config")
async def config(request: Request) -> JSONResponse:
    """What the pages need to know of this deployment: the Grafana link (`GRAFANA_URL`)."""
    grafana = request.app.state.gw.settings.grafana_url.strip()
    return JSONResponse(
        {"grafana_url": grafana if grafana.startswith(("https://", "http://")) else None},
        headers={"Cache-Control": REVALIDATE},
    )


def mount(app: FastAPI) -> None:
    """`/static/js/` (the protocol client) before `/static/` (the portals): first match wins."""
    app.mount("/static/js", PortalStatic(CLIENT_DIR, only=(".js",)), name="client-js")
    app.mount(
        "/static",
        PortalStatic(PORTALS_DIR, only=(".js", ".css", ".svg", ".png", ".ico", ".webmanifest")),
        name="portals",
    )
