"""Everything the browser tests and scripts/sync_bench.py need around the extension.

- Debian's Chromium and ffmpeg, installed on first use when missing (CI starts without them).
- A stand-in for https://www.youtube.com/watch?v=...: an HTTPS server with a self-signed
  certificate, reached under YouTube's name through Chromium's --host-resolver-rules. Its page
  has YouTube's `#movie_player` with a real `<video>` playing a VP9 webm made by ffmpeg,
  navigates in-page like YouTube (history.pushState + `yt-navigate-finish`), and can show an
  "ad" (the `ad-showing` class on #movie_player).
- One Chromium per simulated user: a persistent context (extensions load only there) with the
  unpacked extension, driven through Playwright.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import html
import ipaddress
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
EXTENSION_DIR = ROOT / "extension"
ARTIFACTS = ROOT / ".artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = Path("/usr/lib/chromium/chromium")

# Stand-in videos: id -> title. Every id plays the same generated file.
VIDEOS = {
    "dQw4w9WgXcQ": "Never Gonna Give You Up (stand-in)",
    "jNQXAC9IVRw": "Me at the zoo (stand-in)",
    "9bZkp7q19f0": "Gangnam Style (stand-in)",
}
VIDEO_SECONDS = 90  # long enough for every test and a bench run of a minute
# Keyframe every second: a seek decodes from at most 1 s back, so seeks finish fast. A sound
# track as every YouTube video has one: Chromium treats video-only media differently (it pauses
# it in background tabs), and the audio clock is what drives a real player's currentTime.
FFMPEG_ARGS = [
    "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30", "-t", str(VIDEO_SECONDS),
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(VIDEO_SECONDS),
    "-c:v", "libvpx-vp9", "-b:v", "80k", "-deadline", "realtime", "-cpu-used", "8",
    "-g", "30", "-c:a", "libopus", "-b:a", "24k",
]  # fmt: skip

CHROMIUM_FLAGS = [
    "--no-sandbox",  # root in a container: Chromium's sandbox needs user namespaces
    "--disable-gpu",
    "--disable-background-networking",  # the machine's closed network refuses these calls
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--ignore-certificate-errors",  # the stand-in's self-signed certificate
    # No user gesture in a test; YouTube itself has one (the click that opened the video).
    "--autoplay-policy=no-user-gesture-required",
    # Background tabs and occluded windows would otherwise throttle timers and media.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--disable-background-media-suspend",
    "--mute-audio",
]


# --- system packages ---------------------------------------------------------------------


def ensure_system_packages() -> None:
    """apt-get install what is missing (root, Debian; CI starts with none of it): Chromium,
    ffmpeg for the stand-in's video, zbar to read the overlay's QR code back."""
    wanted = {
        "chromium": CHROMIUM.exists(),
        "ffmpeg": shutil.which("ffmpeg"),
        "zbar-tools": shutil.which("zbarimg"),
    }
    missing = [pkg for pkg, found in wanted.items() if not found]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
        timeout=900,
    )


def make_video(cache_dir: Path = ARTIFACTS / "media") -> Path:
    """The stand-in's webm, made once by ffmpeg and kept in the gitignored artifacts folder."""
    key = hashlib.sha256(json.dumps(FFMPEG_ARGS).encode()).hexdigest()[:12]
    path = cache_dir / f"standin-{key}.webm"
    if path.exists() and path.stat().st_size > 0:
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.webm")
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", *FFMPEG_ARGS, str(tmp)], check=True, timeout=300
    )
    tmp.replace(path)
    return path


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for www.youtube.com (the browsers ignore certificate errors)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.youtube.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("www.youtube.com"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "standin.crt", directory / "standin.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# --- the YouTube stand-in ----------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - YouTube</title>
<style>
 body {{ margin: 0; background: #0f0f0f; color: #f1f1f1; font: 14px system-ui, sans-serif; }}
 #masthead {{ height: 56px; display: flex; align-items: center; padding: 0 16px; font-weight: 700; }}
 #columns {{ display: flex; gap: 24px; padding: 0 24px; }}
 #movie_player {{ position: relative; width: 640px; height: 360px; background: #000; }}
 #movie_player video {{ width: 100%; height: 100%; }}
 #movie_player.ad-showing::after {{ content: "Ad"; position: absolute; left: 8px; bottom: 8px;
   background: #fc0; color: #000; padding: 2px 6px; font-weight: 700; }}
 a {{ color: #3ea6ff; display: block; margin: 6px 0; }}
</style></head>
<body>
<div id="masthead">YouTube (stand-in)</div>
<div id="columns">
 <div id="primary">
  <div id="movie_player" class="html5-video-player">
   <video class="html5-main-video" src="/media/{video_id}.webm" preload="auto" playsinline></video>
  </div>
  <h1 id="title">{title}</h1>
 </div>
 <div id="related">{related}</div>
</div>
<script src="/standin.js"></script>
</body></html>
"""

STANDIN_JS = """
// YouTube's in-page navigation, as the extension sees it: the URL changes by pushState, the
// same <video> gets a new source, and `yt-navigate-finish` is dispatched on the document.
const TITLES = %s;
const player = document.getElementById('movie_player');
const video = player.querySelector('video');
window.standin = {
  navigate(id) {
    document.dispatchEvent(new CustomEvent('yt-navigate-start', { bubbles: true }));
    history.pushState({}, '', '/watch?v=' + id);
    video.src = '/media/' + id + '.webm';
    document.title = TITLES[id] + ' - YouTube';
    document.getElementById('title').textContent = TITLES[id];
    setTimeout(() => document.dispatchEvent(new CustomEvent('yt-navigate-finish', { bubbles: true })), 0);
  },
  ad(showing) { player.classList.toggle('ad-showing', showing); },
};
document.addEventListener('click', (ev) => {
  const link = ev.target.closest('a[data-video]');
  if (!link) return;
  ev.preventDefault();
  window.standin.navigate(link.dataset.video);
});
"""


class _Handler(BaseHTTPRequestHandler):
    server: _StandInHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/watch":
            video_id = parse_qs(url.query).get("v", [""])[0]
            if video_id not in VIDEOS:
                self._send(404, b"no such video", "text/plain", {})
                return
            related = "".join(
                f'<a href="/watch?v={vid}" data-video="{vid}">{html.escape(title)}</a>'
                for vid, title in VIDEOS.items()
                if vid != video_id
            )
            body = PAGE.format(
                title=html.escape(VIDEOS[video_id]), video_id=video_id, related=related
            )
            self._send(200, body.encode(), "text/html; charset=utf-8", {})
        elif url.path == "/standin.js":
            body = (STANDIN_JS % json.dumps(VIDEOS)).encode()
            self._send(200, body, "text/javascript", {})
        elif re.fullmatch(r"/media/[A-Za-z0-9_-]{11}\.webm", url.path):
            self._media()
        else:
            self._send(404, b"not found", "text/plain", {})

    def _media(self) -> None:
        data = self.server.media
        size = len(data)
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if not match:
            self._send(200, data, "video/webm", {"Accept-Ranges": "bytes"})
            return
        start = int(match[1]) if match[1] else max(0, size - int(match[2] or 0))
        end = min(int(match[2]), size - 1) if match[1] and match[2] else size - 1
        if start >= size:
            self._send(416, b"", "video/webm", {"Content-Range": f"bytes */{size}"})
            return
        headers = {"Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{end}/{size}"}
        self._send(206, data[start : end + 1], "video/webm", headers)


class _StandInHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    media: bytes

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Browsers drop connections mid-response (a seek cancels a range request) or
        # mid-handshake: nothing to report.
        pass


@dataclass
class StandIn:
    """The HTTPS stand-in for www.youtube.com on 127.0.0.1:port."""

    video: Path
    workdir: Path
    port: int = 0
    _server: _StandInHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> StandIn:
        cert, key = make_certificate(self.workdir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server = _StandInHTTPServer(("127.0.0.1", 0), _Handler)
        server.media = self.video.read_bytes()
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True, name="standin")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# --- the extension -----------------------------------------------------------------------


def extension_id(manifest_path: Path = EXTENSION_DIR / "manifest.json") -> str:
    """Chrome's id for an extension with a `key`: SHA-256 of the key, 32 hex digits as a-p."""
    key = json.loads(manifest_path.read_text())["key"]
    digest = hashlib.sha256(base64.b64decode(key)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


async def wait_until(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "",
    detail: Callable[[], Awaitable[Any]] | None = None,
) -> Any:
    """Poll an async check until it returns something truthy; its last value on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
        except Exception as exc:  # a page navigating or a worker restarting: try again
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            more = f", {await detail()!r}" if detail is not None else ""
            raise AssertionError(f"timed out waiting for {what or check}: last={last!r}{more}")
        await asyncio.sleep(interval)


VIDEO_STATE_JS = """() => {
  const v = document.querySelector('#movie_player video');
  if (!v) return null;
  return {pos: v.currentTime * 1000, paused: v.paused, rate: v.playbackRate, ended: v.ended,
          readyState: v.readyState, href: location.href,
          videoId: new URL(location.href).searchParams.get('v')};
}"""

# Read currentTime at wall-clock instant T (ms since the epoch) and return it as of T exactly:
# spin on Date.now(), then correct by the time the read took. Every browser shares the clock.
SAMPLE_AT_JS = """(T) => new Promise((resolve) => {
  const read = () => {
    const wait = T - Date.now();
    if (wait > 8) { setTimeout(read, wait - 6); return; }
    while (Date.now() < T) {}
    const v = document.querySelector('#movie_player video');
    const pos = v.currentTime * 1000;
    const late = Date.now() - T;
    resolve({pos: pos - (v.paused ? 0 : late * v.playbackRate), paused: v.paused,
             rate: v.playbackRate, late});
  };
  read();
})"""


@dataclass
class ExtBrowser:
    """One simulated user: a Chromium with the extension, a youtube.com tab, a popup tab."""

    name: str
    context: Any  # playwright BrowserContext
    ext_id: str
    watch: Any = None  # the youtube.com Page
    user_dir: Path | None = None
    console: list[str] = field(default_factory=list)

    @property
    def popup_url(self) -> str:
        return f"chrome-extension://{self.ext_id}/popup/popup.html"

    def worker(self) -> Any:
        workers = [w for w in self.context.service_workers if self.ext_id in w.url]
        if not workers:
            raise AssertionError(f"{self.name}: no extension service worker")
        return workers[-1]

    async def sw(self, expression: str, arg: Any = None) -> Any:
        """Evaluate in the extension's service worker (`sharetube` is its Session)."""
        return await self.worker().evaluate(expression, arg)

    async def status(self) -> dict[str, Any]:
        return await self.sw("() => globalThis.sharetube.status()")

    async def room_playback(self) -> dict[str, Any] | None:
        return await self.sw(
            "() => { const s = globalThis.sharetube; const st = s.client?.getState(s.config.room);"
            " return st ? st.playback : null; }"
        )

    async def open_watch(self, video_id: str) -> Any:
        if self.watch is None:
            self.watch = await self.context.new_page()
            self.watch.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        await self.watch.goto(f"https://www.youtube.com/watch?v={video_id}")
        await self.watch.wait_for_selector("sharetube-overlay", state="attached", timeout=10_000)
        return self.watch

    async def video(self) -> dict[str, Any] | None:
        return await self.watch.evaluate(VIDEO_STATE_JS)

    def overlay(self, name: str) -> Any:
        """A control in the overlay's shadow root (Playwright's CSS pierces open shadow roots)."""
        return self.watch.locator(f"sharetube-overlay [data-st='{name}']")

    async def popup(self) -> Any:
        page = await self.context.new_page()
        await page.goto(self.popup_url)
        await page.wait_for_selector("#connection", state="attached")
        return page

    async def sign_in(self, popup: Any, name: str) -> None:
        await popup.fill("#guest-name", name)
        await popup.click("#guest-sign-in")
        await popup.wait_for_selector("#signed-in:not([hidden])", timeout=10_000)
        await popup.wait_for_selector("#connection[data-state='open']", timeout=10_000)

    async def create_room(self, popup: Any, control_mode: str = "owner_only") -> str:
        before = (await self.status())["room"] or ""
        await popup.select_option("#control-mode", control_mode)
        await popup.click("#create-room")
        await popup.wait_for_function(
            "(before) => { const c = document.getElementById('room-code').textContent;"
            " return c && c !== before && !document.getElementById('current-room').hidden; }",
            arg=before,
        )
        code = (await popup.text_content("#room-code")) or ""
        assert re.fullmatch(r"[A-Za-z0-9]{4,16}", code), code
        return code

    async def join(self, popup: Any, code: str) -> None:
        await popup.fill("#join-code", code)
        await popup.click("#join-room")
        await popup.wait_for_function(
            "(code) => document.getElementById('room-code').textContent === code"
            " && document.getElementById('room-state').textContent === 'joined'",
            arg=code,
            timeout=10_000,
        )

    async def sample_at(self, at_ms: int) -> dict[str, Any]:
        return await self.watch.evaluate(SAMPLE_AT_JS, at_ms)

    async def stop_service_worker(self) -> None:
        """What Chrome does to an idle worker, on demand: CDP ServiceWorker.stopAllWorkers."""
        cdp = await self.context.new_cdp_session(self.watch)
        try:
            await cdp.send("ServiceWorker.enable")
            await cdp.send("ServiceWorker.stopAllWorkers")
        finally:
            await cdp.detach()

    async def close(self) -> None:
        await self.context.close()


async def launch(
    playwright: Any, name: str, standin_port: int, user_dir: Path, ext_dir: Path = EXTENSION_DIR
) -> ExtBrowser:
    """A headless Chromium (new headless mode, which loads extensions) with the extension."""
    context = await playwright.chromium.launch_persistent_context(
        str(user_dir),
        headless=True,
        executable_path=str(CHROMIUM),
        args=[
            *CHROMIUM_FLAGS,
            f"--host-resolver-rules=MAP www.youtube.com:443 127.0.0.1:{standin_port}",
            f"--disable-extensions-except={ext_dir}",
            f"--load-extension={ext_dir}",
        ],
        viewport={"width": 1280, "height": 720},
    )
    context.set_default_timeout(10_000)
    ext_id = extension_id(ext_dir / "manifest.json")
    browser = ExtBrowser(name, context, ext_id, user_dir=user_dir)
    if not any(ext_id in w.url for w in context.service_workers):
        await context.wait_for_event(
            "serviceworker", predicate=lambda w: ext_id in w.url, timeout=15_000
        )
    # The blank first tab of a persistent context becomes the watch tab.
    if context.pages:
        browser.watch = context.pages[0]
        browser.watch.on("console", lambda m: browser.console.append(f"{m.type}: {m.text}"))
    return browser


async def set_server(browser: ExtBrowser, server_url: str) -> None:
    popup = await browser.popup()
    try:
        await popup.click("#settings summary")
        await popup.fill("#server-url", server_url)
        await popup.click("#save-server")
        await popup.wait_for_function(
            "(url) => document.getElementById('server-url').value === url", arg=server_url
        )
    finally:
        await popup.close()


def spread_ms(samples: list[dict[str, Any]]) -> float:
    positions = [s["pos"] for s in samples]
    return max(positions) - min(positions)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.5), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "max_ms": round(max(values), 2),
        "mean_ms": round(statistics.fmean(values), 2),
    }


def read_qr(png: Path) -> str:
    """Decode the QR code in a screenshot with zbar: what a phone's camera would read."""
    out = subprocess.run(
        ["zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(png)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


def temp_profile(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"sharetube-{prefix}-"))
