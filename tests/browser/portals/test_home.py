"""The homepage in a real browser: the public room directory, sign-in, a room made there."""

import pytest
from playwright.async_api import expect

from tests.browser.portals.conftest import audit, screenshot, sign_in_as_guest
from tests.support.system import System

pytestmark = pytest.mark.browser


async def test_the_homepage_lists_a_public_room_and_not_a_private_one(
    portal_system: System, contexts, clients
) -> None:
    owner = await clients("Hana")
    public = (await owner.call("room.create", {"name": "Open house", "visibility": "public"}))[
        "room"
    ]["code"]
    private = (await owner.call("room.create", {"name": "Secret den"}))["room"]["code"]
    for code in (public, private):
        await owner.call("join", room=code)

    page = await contexts["desktop"].new_page()
    await page.goto(portal_system.base_url + "/")
    listed = page.locator(f'#room-list [data-room-code="{public}"]')
    await expect(listed).to_contain_text("Open house")
    await expect(listed).to_contain_text("1 person online")
    await expect(
        listed.get_by_role("link", name="Open the remote for Open house")
    ).to_have_attribute("href", f"/mobile-remote?room={public}")
    await expect(page.locator(f'[data-room-code="{private}"]')).to_have_count(0)
    await expect(page.get_by_text("Secret den")).to_have_count(0)
    assert await audit(page) == []
    await screenshot(page, "home-desktop")

    # Sign in as a guest and make a room right on the page.
    await sign_in_as_guest(page, "Ines")
    await expect(page.locator("#account")).to_contain_text("Signed in as Ines")
    await page.get_by_label("Room name").fill("Made on the homepage")
    await page.get_by_role("button", name="Create room").click()
    created = page.locator("#created")
    await expect(created).to_contain_text("is ready")
    code = await created.locator(".mono").text_content()
    assert code and code not in (public, private)

    phone = await contexts["phone"].new_page()
    await phone.goto(portal_system.base_url + "/")
    await expect(phone.locator(f'#room-list [data-room-code="{public}"]')).to_be_visible()
    assert await audit(phone) == []
    await screenshot(phone, "home-phone")
