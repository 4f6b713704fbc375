"""The Chrome extension in headless Chromium: three users, each in their own browser with the
unpacked extension, watch the YouTube stand-in together through the whole running system.

Every test makes its own room (the browsers are shared by the module, to keep it fast), joined
through each browser's popup opened as a tab."""

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common import devstack
from tests.browser import harness
from tests.browser.harness import SCREENSHOTS, VIDEOS, ExtBrowser, wait_until
from tests.conftest import make_system
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, serve
from tests.support.system import System

pytestmark = pytest.mark.browser

X, Y, Z = list(VIDEOS)
# Generous, as the issue asks: on this 2-core machine 3 Chromiums decode video next to the
# whole system; the measured spread (printed, and in the bench) is far smaller.
SPREAD_BOUND_MS = 150.0

PAUSE_VIDEO = "document.querySelector('#movie_player video').pause()"
PLAY_VIDEO = "document.querySelector('#movie_player video').play()"


# --- helpers ---------------------------------------------------------------------------------


async def new_room(users: list[ExtBrowser], control_mode: str, video_id: str = X) -> str:
    """Everybody on `video_id`; the first user creates a room in their popup, the others join
    it with the code in theirs."""
    await asyncio.gather(*(u.open_watch(video_id) for u in users))
    popup = await users[0].popup()
    code = await users[0].create_room(popup, control_mode)
    await popup.close()
    for user in users[1:]:
        popup = await user.popup()
        await user.join(popup, code)
        await popup.close()
    await asyncio.gather(*(wait_for_members(u, len(users)) for u in users))
    return code


async def wait_for_members(user: ExtBrowser, count: int) -> None:
    members = user.watch.locator("sharetube-overlay [data-st='members'] li")
    await wait_until(
        lambda: _eq(members.count(), count),
        what=f"{user.name} sees {count} members",
        detail=lambda: _members_detail(user, members),
    )


async def _members_detail(user: ExtBrowser, members: Any) -> Any:
    return [
        await members.all_text_contents(),
        await user.sw(
            "() => { const s = globalThis.sharetube; const st = s.client.getState(s.config.room);"
            " return [s.config.room, st?.members, st?.versions]; }"
        ),
    ]


async def _eq(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def queue_ids(user: ExtBrowser) -> list[str]:
    return await user.watch.eval_on_selector_all(
        "sharetube-overlay [data-st='queue'] li[data-entry]",
        "items => items.map(li => li.querySelector('.t').textContent)",
    )


async def playing(user: ExtBrowser, video_id: str, after_ms: float = 0) -> bool:
    """The user's room plays `video_id`, and so does their video, past `after_ms`."""
    pb = await user.room_playback()
    if not pb or pb["status"] != "playing" or pb["video_id"] != video_id:
        return False
    v = await user.video()
    return bool(v and v["videoId"] == video_id and not v["paused"] and v["pos"] > after_ms)


async def all_playing(users: list[ExtBrowser], video_id: str, after_ms: float = 0) -> None:
    await asyncio.gather(
        *(
            wait_until(
                lambda u=u: playing(u, video_id, after_ms),
                what=f"{u.name} playing",
                detail=lambda u=u: _where(u),
            )
            for u in users
        )
    )


async def _where(user: ExtBrowser) -> Any:
    client = await user.sw(
        "() => { const c = globalThis.sharetube.client; const st = c.getState();"
        " return {room: c.room, connected: c.connected, versions: st?.versions}; }"
    )
    return {"room": await user.room_playback(), "video": await user.video(), "client": client}


async def paused_at(user: ExtBrowser, status: str = "paused") -> float | None:
    v = await user.video()
    pb = await user.room_playback()
    if v and pb and pb["status"] == status and v["paused"] and not v["ended"]:
        if abs(v["pos"] - pb["position_ms"]) <= 50:
            return v["pos"]
    return None


async def spreads(users: list[ExtBrowser], count: int, every_ms: int = 250) -> list[float]:
    """Sample every browser's currentTime at the same wall-clock instants; spread per instant."""
    start = int(time.time() * 1000) + 300
    out = []
    for i in range(count):
        samples = await asyncio.gather(*(u.sample_at(start + i * every_ms) for u in users))
        assert not any(s["paused"] for s in samples), samples
        out.append(harness.spread_ms(samples))
    return out


async def start_playing(users: list[ExtBrowser], control_mode: str = "any") -> str:
    """A room with X queued and playing for everybody."""
    code = await new_room(users, control_mode)
    owner = users[0]
    await owner.overlay("add-current").click()
    await wait_until(lambda: _eq(queue_ids(owner), [VIDEOS[X]]), what="queued")
    await owner.overlay("play").click()
    await all_playing(users, X, after_ms=300)
    return code


async def screenshot_overlay(user: ExtBrowser, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await user.watch.locator("sharetube-overlay .panel").screenshot(path=SCREENSHOTS / name)


# --- tests -----------------------------------------------------------------------------------


async def test_extension_identity_and_least_privilege(trio: list[ExtBrowser]) -> None:
    manifest = json.loads((harness.EXTENSION_DIR / "manifest.json").read_text())
    assert manifest["manifest_version"] == 3
    assert sorted(manifest["permissions"]) == ["identity", "storage"]
    assert "host_permissions" not in manifest  # the gateway answers CORS; no blanket access
    assert manifest["content_scripts"][0]["matches"] == ["https://www.youtube.com/*"]
    # The fixed key gives the same id in every browser (what CORS_ORIGINS can name).
    assert {u.worker().url.split("/")[2] for u in trio} == {harness.extension_id()}
    # One copy of the protocol client: the extension's module is the shared file.
    client = harness.EXTENSION_DIR / "lib" / "sharetube-client.js"
    assert client.resolve() == (harness.ROOT / "clients/js/sharetube-client.js").resolve()


async def test_room_through_popups_and_controls_reach_everyone(trio: list[ExtBrowser]) -> None:
    ann, ben, cat = trio
    await new_room(trio, "any")

    # Ann queues the video she is on, then one she reaches by YouTube's in-page navigation.
    await ann.overlay("add-current").click()
    await ann.watch.click(f"a[data-video='{Y}']")
    await wait_until(lambda: _eq(ann.watch.evaluate("location.search"), f"?v={Y}"))
    await ann.overlay("add-current").click()
    titles = [VIDEOS[X], VIDEOS[Y]]
    for user in trio:
        await wait_until(lambda u=user: _eq(queue_ids(u), titles), what=f"{user.name} queue")

    # Ben drags Y above X in his overlay: the new order reaches everybody.
    await (
        ben.overlay("queue")
        .locator(f"li:has-text('{VIDEOS[Y]}')")
        .drag_to(ben.overlay("queue").locator(f"li:has-text('{VIDEOS[X]}')"))
    )
    for user in trio:
        await wait_until(lambda u=user: _eq(queue_ids(u), titles[::-1]), what=f"{user.name} order")

    # Ann presses play: Y starts for everybody (Ben and Cat are taken to it), at one instant.
    await ann.overlay("play").click()
    await all_playing(trio, Y, after_ms=300)
    assert max(await spreads(trio, 4)) < SPREAD_BOUND_MS
    # Chat from the overlay reaches everybody's overlay.
    await ann.overlay("chat-input").fill("hello from Ann")
    await ann.overlay("chat-send").click()
    for user in trio:
        log = user.overlay("chat-log")
        await wait_until(lambda log=log: _contains(log.text_content(), "Ann: hello from Ann"))
    await screenshot_overlay(ann, "overlay-playing.png")
    await ann.watch.screenshot(path=SCREENSHOTS / "watch-page.png")

    # Ben pauses with YouTube's own player (the video element): everybody pauses, same frame.
    await ben.watch.evaluate(PAUSE_VIDEO)
    held = await asyncio.gather(
        *(wait_until(lambda u=u: paused_at(u), what=f"{u.name} paused") for u in trio)
    )
    assert max(held) - min(held) <= 60, held

    # Cat seeks while paused: everybody moves to 30 s.
    await cat.watch.evaluate("document.querySelector('#movie_player video').currentTime = 30")
    for user in trio:
        await wait_until(
            lambda u=user: _between(paused_at(u), 29_950, 30_050), what=f"{user.name} at 30 s"
        )

    # Ann plays with the player again: everybody resumes from 30 s.
    await ann.watch.evaluate(PLAY_VIDEO)
    await all_playing(trio, Y, after_ms=30_100)

    # Cat makes it 1.5× for everybody (the room's rate, applied by every player).
    await cat.overlay("rate").select_option("1.5")
    for user in trio:
        await wait_until(lambda u=user: _rate_near(u, 1.5), what=f"{user.name} at 1.5×")
    assert max(await spreads(trio, 3)) < SPREAD_BOUND_MS
    await cat.overlay("rate").select_option("1")

    # Ben skips in the overlay: the room moves on to X, and every tab opens it and plays.
    await ben.overlay("skip").click()
    await all_playing(trio, X, after_ms=200)
    for user in trio:
        assert (await user.room_playback())["video_id"] == X
    assert max(await spreads(trio, 4)) < SPREAD_BOUND_MS


async def _rate_near(user: ExtBrowser, rate: float) -> bool:
    pb, v = await user.room_playback(), await user.video()
    return pb["rate"] == rate and v is not None and abs(v["rate"] - rate) <= 0.05 * rate


async def _between(value: Any, lo: float, hi: float) -> bool:
    got = await value
    return got is not None and lo <= got <= hi


async def test_overlay_qr_code_opens_the_mobile_remote(trio: list[ExtBrowser], system: Any) -> None:
    ann = trio[0]
    code = await new_room(trio[:1], "owner_only")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = SCREENSHOTS / "overlay-qr.png"
    await ann.overlay("qr").locator("svg").screenshot(path=png)
    assert harness.read_qr(png) == f"{system.base_url}/mobile-remote?room={code}"


async def test_member_without_control_rights_cannot_move_the_room(
    trio: list[ExtBrowser],
) -> None:
    ann, ben, _cat = trio
    await start_playing(trio, control_mode="owner_only")
    before = await ann.room_playback()

    # Ben's overlay offers no controls...
    for name in ("play", "pause", "skip", "restart", "fwd10"):
        assert await ben.overlay(name).is_disabled(), name
    assert await ann.overlay("pause").is_enabled()
    # ...the rooms service refuses his commands...
    refused = await ben.sw(
        "() => globalThis.sharetube.command('pause').then(() => 'ok', e => e.code)"
    )
    assert refused == "forbidden"

    # ...and his own player snaps back: a pause resumes, a seek returns to the room's position.
    await ben.watch.evaluate(PAUSE_VIDEO)
    await wait_until(lambda: playing(ben, X), what="Ben snapped back to playing")
    notice = ben.overlay("notice")
    await wait_until(lambda: _contains(notice.text_content(), "owner"), what="notice")
    await ben.watch.evaluate("document.querySelector('#movie_player video').currentTime += 20")
    await asyncio.sleep(1.0)
    assert max(await spreads(trio, 3)) < SPREAD_BOUND_MS

    after = await ann.room_playback()
    assert (after["status"], after["anchor_ms"], after["position_ms"]) == (
        before["status"],
        before["anchor_ms"],
        before["position_ms"],
    )
    await screenshot_overlay(ben, "overlay-member.png")


async def _contains(value: Any, text: str) -> bool:
    return text in ((await value) or "")


async def test_sync_precision(trio: list[ExtBrowser]) -> None:
    """Sample currentTime in all three browsers at the same instants over four seconds."""
    await start_playing(trio)
    await asyncio.sleep(0.5)
    measured = await spreads(trio, 16)
    stats = harness.summary(measured)
    print(f"\nsync spread over {len(trio)} browsers: {stats}")
    assert stats["max_ms"] < SPREAD_BOUND_MS, stats
    # Each player also agrees with where the room says the video is (its own measure).
    for user in trio:
        drift = await user.watch.get_attribute("sharetube-overlay", "data-drift-ms")
        assert drift is not None and abs(int(drift)) < SPREAD_BOUND_MS, (user.name, drift)


async def test_service_worker_stopped_mid_session_recovers(trio: list[ExtBrowser]) -> None:
    ann, ben, cat = trio
    await start_playing(trio)
    starts = (await ben.status())["starts"]
    pos_before = (await ben.video())["pos"]

    await ben.stop_service_worker()

    async def recovered() -> bool:
        status = await ben.status()
        return (
            status["starts"] > starts
            and status["connection"] == "open"
            and status["joined"]
            and status["player"]
        )

    await wait_until(recovered, timeout=15, what="Ben's new service worker joined")
    # The video never stopped, and the overlay shows the connection back.
    assert (await ben.video())["pos"] > pos_before
    assert await ben.overlay("connection").get_attribute("data-state") == "open"

    # Commands still flow both ways: Ann pauses, Ben sees it; Ben plays, Ann sees it.
    await ann.overlay("pause").click()
    await asyncio.gather(*(wait_until(lambda u=u: paused_at(u)) for u in trio))
    await ben.overlay("play").click()
    await all_playing(trio, X)
    assert max(await spreads([ann, ben, cat], 3)) < SPREAD_BOUND_MS


@pytest.mark.parametrize("policy", ["pause_all", "off"])
async def test_ad_on_one_client(trio: list[ExtBrowser], policy: str) -> None:
    ann, ben, cat = trio
    await start_playing(trio)
    result = await ann.sw(
        "(p) => globalThis.sharetube.command('room.settings', {ad_sync: p})", policy
    )
    assert result["settings"]["ad_sync"] == policy

    await ben.watch.evaluate("window.standin.ad(true)")
    await wait_until(lambda: _report_sent(ben, 1), what="Ben's extension reported the ad")
    if policy == "pause_all":
        # Everybody else holds at one frame while Ben's ad plays; Ben's player is left alone.
        held = await asyncio.gather(
            *(wait_until(lambda u=u: paused_at(u, "midroll"), what=u.name) for u in (ann, cat))
        )
        assert abs(held[0] - held[1]) <= 60
        assert not (await ben.video())["paused"]
    else:
        await asyncio.sleep(1.0)
        assert (await ann.room_playback())["status"] == "playing"
        await all_playing([ann, cat], X)

    await ben.watch.evaluate("window.standin.ad(false)")
    await wait_until(lambda: _report_sent(ben, 2), what="Ben's extension reported the end")
    await all_playing(trio, X)
    await asyncio.sleep(0.5)
    assert (await ann.room_playback())["status"] == "playing"
    assert max(await spreads(trio, 3)) < SPREAD_BOUND_MS


async def _report_sent(user: ExtBrowser, count: int) -> bool:
    reports = (await user.status())["reports"]
    return reports["sent"]["ad"] >= count and reports["supported"]["ad"] is True


async def test_popup_sign_in_settings_and_recent_rooms(launch: Any, system: Any) -> None:
    """A fresh user: the default server, Google sign-in's error shown, guest sign-in, a room,
    recent rooms, sign-out."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dan: ExtBrowser = await launch("Dan", sign_in=False)
    popup = await dan.popup()
    await popup.set_viewport_size({"width": 340, "height": 640})
    await popup.click("#settings summary")
    assert await popup.input_value("#server-url") == "http://127.0.0.1:8000"
    await popup.fill("#server-url", system.base_url)
    await popup.click("#save-server")
    await wait_until(lambda: _server_is(dan, system.base_url), what="server saved")

    # This test system has no Google client configured: the server's error is shown as is.
    await popup.click("#google-sign-in")
    error = popup.locator("#error")
    await error.wait_for(state="visible")
    assert (await error.get_attribute("data-code")) not in ("", None)
    assert (await error.text_content()).strip()
    assert await popup.is_visible("#signed-out")
    await popup.screenshot(path=SCREENSHOTS / "popup-signed-out.png")

    await dan.sign_in(popup, "Dan")
    assert not await error.is_visible()
    first = await dan.create_room(popup, "operators")
    await popup.click("#leave-room")
    await popup.wait_for_selector("#current-room[hidden]", state="attached")
    second = await dan.create_room(popup)
    recent = popup.locator(f"#recent-rooms button[data-code='{first}']")
    await recent.click()
    await popup.wait_for_function(
        "(code) => document.getElementById('room-code').textContent === code", arg=first
    )
    assert await popup.is_visible(f"#recent-rooms button[data-code='{second}']")
    await popup.screenshot(path=SCREENSHOTS / "popup-in-room.png")
    status = await dan.status()
    assert (status["room"], status["joined"], status["user"]["name"]) == (first, True, "Dan")

    await popup.click("#sign-out")
    await popup.wait_for_selector("#signed-out:not([hidden])")
    assert (await dan.status())["user"] is None
    await dan.close()


async def _server_is(user: ExtBrowser, url: str) -> bool:
    return (await user.status())["serverUrl"] == url


@pytest.fixture(scope="module")
def google_system(infra: dict[str, str], workdir: Path) -> Iterator[System]:
    """A second system with Google sign-in on, against a local OpenID Connect provider, that
    lets tokens go to this extension's chromiumapp.org origin. Its own NATS keeps its auth
    service (Google configured) apart from the main system's."""
    with serve(OidcProvider(default_email="eve@example.com")) as oidc:
        nats, nats_url = devstack.start_nats(workdir / "nats-extension-google")
        port = devstack.free_port()
        base = f"http://127.0.0.1:{port}"
        oidc.redirect_uris[CLIENT_ID] = {f"{base}/auth/google/callback"}
        env = {
            **infra,
            "NATS_URL": nats_url,
            "GOOGLE_CLIENT_ID": CLIENT_ID,
            "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
            "OIDC_ISSUER": oidc.issuer,
            "BACKEND_BASE_URL": base,
            "EXTENSION_REDIRECT_ORIGINS": f"https://{harness.extension_id()}.chromiumapp.org",
        }
        system = make_system(env, workdir, "extension-google")
        system.port = port
        try:
            yield system.start({"auth": 1, "rooms": 1, "queue": 1, "chat": 1, "gateway": 1})
        finally:
            system.stop()
            nats.stop()


async def test_google_sign_in_through_launch_web_auth_flow(
    launch: Any, google_system: System
) -> None:
    """The popup's Google button: chrome.identity.launchWebAuthFlow runs the whole redirect
    flow (gateway → provider → gateway callback → chromiumapp.org#token) and the extension
    is signed in as the provider's user, connected."""
    eve: ExtBrowser = await launch("Eve", sign_in=False)
    await harness.set_server(eve, google_system.base_url)
    popup = await eve.popup()
    await popup.click("#google-sign-in")
    await popup.wait_for_selector("#signed-in:not([hidden])", timeout=20_000)
    await popup.wait_for_selector("#connection[data-state='open']")
    assert await popup.text_content("#user-name") == "Eve"
    status = await eve.status()
    assert status["user"]["name"] == "Eve" and status["user"].get("kind") == "google"
    code = await eve.create_room(popup)
    assert (await eve.status())["room"] == code
    await eve.close()
