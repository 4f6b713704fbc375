"""The admin dashboard in a real browser. Admins sign in with Google (the local OpenID Connect
provider) as an account in ADMIN_EMAILS; everyone else is refused by the page and by the
server behind it. A room a test makes shows up live, an admin's kick reaches the member, and
closing the room reaches everyone in it and takes it off every open dashboard, no reload."""

from collections.abc import Iterator

import pytest
from playwright.async_api import Page, expect

from tests.browser.portals.conftest import (
    ADMIN_EMAIL,
    GRAFANA_URL,
    audit,
    screenshot,
    use_token,
)
from tests.support.client import ReplyError, WsClient
from tests.support.oidc_provider import OidcProvider
from tests.support.system import System

pytestmark = pytest.mark.browser


@pytest.fixture
def signs_in_as(oidc: OidcProvider) -> Iterator[object]:
    """The e-mail the provider approves the next Google sign-ins as."""
    before = oidc.default_email

    def set_email(email: str) -> None:
        oidc.default_email = email

    yield set_email
    oidc.default_email = before


async def google_sign_in(page: Page, base_url: str) -> str:
    """Through the dashboard's button, the provider and back; the token the page now holds."""
    await page.goto(base_url + "/dashboard")
    await page.get_by_role("button", name="Sign in with Google").click()
    await page.wait_for_url(base_url + "/dashboard")  # back, the fragment already taken
    token = await page.wait_for_function("() => localStorage.getItem('sharetube.token')")
    return str(await token.json_value())


async def test_the_dashboard_refuses_a_non_admin(
    portal_system: System, contexts, clients, signs_in_as
) -> None:
    page = await contexts["desktop"].new_page()
    await page.goto(portal_system.base_url + "/dashboard")
    await expect(page.locator("#gate")).to_contain_text("Admins only: sign in with Google")
    await expect(page.get_by_label("Your name")).to_have_count(0)  # no guests here
    assert await audit(page) == []
    signs_in_as("ann@example.com")  # a Google account, not in ADMIN_EMAILS
    token = await google_sign_in(page, portal_system.base_url)
    gate = page.locator("#gate")
    await expect(gate).to_contain_text("This dashboard is for ShareTube admins")
    await expect(gate).to_contain_text("You are signed in as Ann")
    await expect(page.locator("#console")).to_be_hidden()
    assert await page.locator("#rooms tr").count() == 0

    # The server refuses it too, whatever a page does: the same token, and a guest's.
    for client in (
        await WsClient.connect(portal_system.ws_url, token, "ann"),
        await clients("Gus"),
    ):
        with pytest.raises(ReplyError) as refused:
            await client.call("admin.rooms", {})
        assert refused.value.code == "forbidden"
        await client.close()

    # A guest opening the page sees the refusal too.
    guest = await clients("Gail")
    await use_token(page, portal_system.base_url + "/dashboard", guest.token)
    await expect(gate).to_contain_text("You are signed in as Gail, who is not an admin")
    assert await audit(page) == []
    await screenshot(page, "dashboard-refused")


async def test_an_admin_sees_a_new_room_live_kicks_a_member_and_closes_the_room(
    portal_system: System, contexts, clients, signs_in_as
) -> None:
    page = await contexts["desktop"].new_page()
    signs_in_as(ADMIN_EMAIL)
    token = await google_sign_in(page, portal_system.base_url)
    await expect(page.locator("#status")).to_have_text("Live")
    await expect(page.locator("#console")).to_be_visible()
    await expect(page.get_by_role("link", name="Grafana")).to_have_attribute("href", GRAFANA_URL)
    await expect(page.locator('[data-figure="connections"]')).not_to_have_text("–")

    # A room made now, private, appears without a reload, with its members and queue.
    owner = await clients("Dora")
    code = (await owner.call("room.create", {"name": "Late show"}))["room"]["code"]
    await owner.call("join", room=code)
    member = await clients("Kim")
    await member.call("join", room=code)
    await owner.call("queue.add", {"video_id": "dQw4w9WgXcQ", "title": "A song"}, room=code)
    row = page.locator(f'#rooms tr[data-room-code="{code}"]')
    await expect(row).to_contain_text("Late show", timeout=8000)
    await expect(row).to_contain_text("private")
    await expect(row).to_contain_text("2 online")
    await expect(row.locator("[data-queue-length]")).to_have_text("1")
    await expect(row).to_contain_text("Kim")
    await expect(row.get_by_role("button", name="Kick Dora from Late show")).to_have_count(0)
    await owner.call("play", room=code)
    await expect(row.locator("[data-state]")).to_have_attribute("data-state", "playing")
    await expect(page.locator("#audit")).to_contain_text(code)

    # Kick: two clicks (arm, confirm); the member's socket is evicted, the row follows.
    kick = row.get_by_role("button", name="Kick Kim from Late show")
    await kick.click()
    await row.get_by_role("button", name="Confirm: Kick Kim from Late show").click()
    evicted = await member.wait_for(lambda e: e["type"] == "evicted")
    assert evicted["room"] == code and evicted["data"]["reason"] == "kicked"
    await expect(row).to_contain_text("1 online")
    await expect(row).not_to_contain_text("Kim")
    await expect(page.locator("#audit")).to_contain_text("room.kick")

    assert await audit(page) == []
    await screenshot(page, "dashboard-desktop")
    phone = await contexts["phone"].new_page()
    await use_token(phone, portal_system.base_url + "/dashboard", token)
    phone_row = phone.locator(f'#rooms tr[data-room-code="{code}"]')
    await expect(phone_row).to_be_visible()
    assert await audit(phone) == []
    await screenshot(phone, "dashboard-phone")

    # Close the room: two clicks again. The owner's socket, still in it, is evicted; the row
    # goes at once on this page and within a refresh on the phone's, neither reloaded.
    for each in (page, phone):
        await each.evaluate("window.stillTheSamePage = true")
    await row.get_by_role("button", name="Close room Late show").click()
    await row.get_by_role("button", name="Confirm: Close room Late show").click()
    await expect(page.locator("#message")).to_contain_text(f"Late show ({code}) was closed")
    closed = await owner.wait_for(lambda e: e["type"] == "evicted")
    assert closed == {"type": "evicted", "room": code, "data": {"reason": "closed"}}
    await expect(row).to_have_count(0, timeout=1000)  # not waiting for the next poll
    await expect(phone_row).to_have_count(0, timeout=8000)
    await expect(page.locator("#audit")).to_contain_text("room.close")
    for each in (page, phone):
        assert await each.evaluate("window.stillTheSamePage") is True
    with pytest.raises(ReplyError) as gone:
        await owner.call("join", room=code)
    assert gone.value.code == "not_found"
