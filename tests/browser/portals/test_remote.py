"""The mobile remote at a phone's size (360×740, touch) controls a room that a WebSocket client
is in: the client sees every command the remote sends, and the remote shows the room live."""

import time
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.portals.conftest import audit, screenshot, sign_in_as_guest
from tests.support.client import WsClient, member_entries
from tests.support.system import System

pytestmark = pytest.mark.browser

FIRST, SECOND, THIRD, FOURTH = "dQw4w9WgXcQ", "jNQXAC9IVRw", "9bZkp7q19f0", "kJQP7kiw5Fk"
MINUTES_3 = 180_000


def queue_ids(event: dict[str, Any]) -> list[str]:
    return [e["video_id"] for e in event["data"]]


async def next_queue(client: WsClient, expected: list[str], timeout: float = 10) -> None:
    await client.wait_for(lambda e: e["type"] == "queue" and queue_ids(e) == expected, timeout)


async def touch_drag(page: Page, handle: Any, to_y: float, steps: int = 8) -> None:
    """A finger drag through Chromium's touch input (CDP), as a phone's touchscreen sends it."""
    box = await handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = await page.context.new_cdp_session(page)
    await cdp.send(
        "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]}
    )
    for i in range(1, steps + 1):
        point = {"x": x, "y": y + (to_y - y) * i / steps}
        await cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    await cdp.detach()


async def shown_position(page: Page) -> int:
    return int(await page.locator("#position").get_attribute("data-position-ms") or 0)


async def test_the_remote_controls_a_room_a_client_is_in(
    portal_system: System, contexts, clients
) -> None:
    owner = await clients("Olga")
    code = (await owner.call("room.create", {"name": "Sofa", "control_mode": "any"}))["room"][
        "code"
    ]
    await owner.call("join", room=code)
    for video_id, title in ((FIRST, "First song"), (SECOND, "Second song"), (THIRD, "Third song")):
        data = {"video_id": video_id, "title": title, "duration_ms": MINUTES_3}
        await owner.call("queue.add", data, room=code)

    page = await contexts["phone"].new_page()
    await page.goto(f"{portal_system.base_url}/mobile-remote?room={code}")
    await expect(page.get_by_role("button", name="Sign in with Google")).to_be_visible()
    assert await audit(page) == []
    await screenshot(page, "remote-signin-phone")
    await sign_in_as_guest(page, "Rita")
    await expect(page.locator("#status")).to_have_text("Connected")
    await expect(page.locator("#room-code-label")).to_have_text(code)
    await expect(page.locator("#queue > li")).to_have_count(3)
    await expect(page.locator("#members")).to_contain_text("Olga")
    await expect(page.locator("#members")).to_contain_text("Rita (you)")
    await owner.wait_for(
        lambda e: e["type"] == "members" and any(m["name"] == "Rita" for m in member_entries(e))
    )

    # Add by URL.
    await page.get_by_label("Add a YouTube link").fill(f"https://www.youtube.com/watch?v={FOURTH}")
    await page.get_by_role("button", name="Add", exact=True).click()
    await next_queue(owner, [FIRST, SECOND, THIRD, FOURTH])
    await expect(page.locator("#queue > li")).to_have_count(4)

    # Play: the first entry starts for the room; the remote's clock ticks with it.
    await page.get_by_role("button", name="Play").click()
    playing = await owner.wait_playback("playing", video_id=FIRST)
    await expect(page.locator("#now-title")).to_have_text("First song")
    await expect(page.get_by_role("button", name="Pause")).to_be_visible()
    await page.wait_for_timeout(1200)
    expected_ms = (
        playing["position_ms"] + (time.time() * 1000 - playing["anchor_ms"]) * playing["rate"]
    )
    shown = await shown_position(page)
    assert abs(shown - expected_ms) < 600, (shown, expected_ms)
    await page.wait_for_timeout(600)
    assert await shown_position(page) > shown  # ticking

    # Pause, then seek +10 s and restart while paused.
    await page.get_by_role("button", name="Pause").click()
    paused = await owner.wait_playback("paused")
    await expect(page.locator("#play-status")).to_have_text("paused")
    await page.get_by_role("button", name="Forward 10 seconds").click()
    sought = await owner.wait_for(
        lambda e: (
            e["type"] == "playback" and e["data"]["position_ms"] >= paused["position_ms"] + 9_000
        )
    )
    assert sought["data"]["position_ms"] <= paused["position_ms"] + 11_000
    await page.get_by_role("button", name="Restart from the beginning").click()
    await owner.wait_for(
        lambda e: e["type"] == "playback" and e["v"] > sought["v"] and e["data"]["position_ms"] == 0
    )

    # Reorder by a finger drag on the handle: the last entry to the top.
    rows = page.locator("#queue > li")
    await expect(rows).to_have_count(3)  # the first entry is playing, off the queue
    await page.locator("#queue").scroll_into_view_if_needed()
    top = await rows.nth(0).bounding_box()
    await touch_drag(page, rows.nth(2).locator(".handle"), top["y"] + 4)
    await next_queue(owner, [FOURTH, SECOND, THIRD])
    await expect(rows.nth(0)).to_contain_text(FOURTH)

    # ... and with the keyboard: the focused handle moves its entry down one.
    await rows.nth(0).locator(".handle").focus()
    await page.keyboard.press("ArrowDown")
    await next_queue(owner, [SECOND, FOURTH, THIRD])
    await expect(rows.nth(1)).to_contain_text(FOURTH)

    # Remove.
    await page.get_by_role("button", name="Remove “Third song”").click()
    await next_queue(owner, [SECOND, FOURTH])

    # Skip: the next entry plays.
    await page.get_by_role("button", name="Skip to the next video").click()
    await owner.wait_for(lambda e: e["type"] == "playback" and e["data"]["video_id"] == SECOND)
    await expect(page.locator("#now-title")).to_have_text("Second song")

    # Chat both ways.
    await page.get_by_label("Message").fill("hello from the sofa")
    await page.get_by_role("button", name="Send").click()
    await owner.wait_for(
        lambda e: e["type"] == "chat" and e["data"]["text"] == "hello from the sofa"
    )
    await owner.call("chat.send", {"text": "welcome, Rita"}, room=code)
    await expect(page.locator("#chat")).to_contain_text("Olga: welcome, Rita")

    assert await audit(page) == []
    await screenshot(page, "remote-phone")
    desktop = await contexts["desktop"].new_page()
    await desktop.goto(page.url)
    token = await page.evaluate("localStorage.getItem('sharetube.token')")
    await desktop.evaluate("t => localStorage.setItem('sharetube.token', t)", token)
    await desktop.reload()
    await expect(desktop.locator("#now-title")).to_have_text("Second song")
    await screenshot(desktop, "remote-desktop")
    await desktop.close()


async def test_the_remote_reconnects_by_itself(portal_system: System, contexts, clients) -> None:
    owner = await clients("Omar")
    code = (await owner.call("room.create", {"control_mode": "any"}))["room"]["code"]
    await owner.call("join", room=code)
    await owner.call("queue.add", {"video_id": FIRST, "duration_ms": MINUTES_3}, room=code)

    page = await contexts["phone"].new_page()
    await page.goto(f"{portal_system.base_url}/mobile-remote?room={code}")
    await sign_in_as_guest(page, "Remy")
    await expect(page.locator("#status")).to_have_text("Connected")
    await expect(page.locator("#queue > li")).to_have_count(1)

    # The gateway goes away and a new one comes up on the same address.
    gateway = next(p for p in portal_system.processes if p.name.startswith("gateway"))
    gateway.stop()
    portal_system.processes.remove(gateway)
    await expect(page.locator("#status")).to_have_text("Reconnecting…")
    portal_system.start_service("gateway", {"PORT": str(portal_system.port)})
    portal_system.wait_ready()
    await expect(page.locator("#status")).to_have_text("Connected", timeout=20_000)

    # The remote is back in the room (re-joined by the client) and its commands go through.
    again = await clients("Omar again")
    await again.call("join", room=code)
    await page.get_by_role("button", name="Play").click()
    await again.wait_playback("playing", video_id=FIRST)
    await expect(page.locator("#play-status")).to_have_text("playing")
