"""Google sign-in end to end, against a local OpenID Connect provider the tests start: the full
redirect flow driven by an HTTP client that keeps cookies and follows redirects, as a browser
(or chrome.identity.launchWebAuthFlow) does; guest upgrade, admins, sign-out, token lifetime."""

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import websockets

from services.common import devstack, tokens
from services.common.contracts.models import UserRef
from tests.conftest import TEST_ENV, make_system
from tests.support.client import WsClient, guest
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, serve
from tests.support.system import System

pytestmark = pytest.mark.e2e

EXTENSION_ORIGIN = "https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org"
TOKEN_LIFETIME_S = 3600  # not the 14-day default: the tokens must show this one
SECRET = TEST_ENV["JWT_SECRET"]


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with serve(OidcProvider()) as running:
        yield running


@pytest.fixture(autouse=True)
def _provider_defaults(provider: OidcProvider) -> Iterator[None]:
    yield
    provider.id_token_overrides.clear()
    provider.deny_next = False


@pytest.fixture(scope="module")
def google(infra: dict[str, str], workdir: Path, provider: OidcProvider) -> Iterator[System]:
    """A system configured for Google sign-in at the local provider, on its own bus."""
    nats, nats_url = devstack.start_nats(workdir / "nats-google")
    port = devstack.free_port()
    base = f"http://127.0.0.1:{port}"
    provider.redirect_uris[CLIENT_ID] = {f"{base}/auth/google/callback"}
    env = {
        **infra,
        "NATS_URL": nats_url,
        "GOOGLE_CLIENT_ID": CLIENT_ID,
        "GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_ISSUER": provider.issuer,
        "BACKEND_BASE_URL": base,
        "EXTENSION_REDIRECT_ORIGINS": f"{EXTENSION_ORIGIN}, https://other.chromiumapp.org",
        "ADMIN_EMAILS": "Boss@Example.com,ops@example.com",
        "ACCESS_TOKEN_EXPIRES_SECONDS": str(TOKEN_LIFETIME_S),
    }
    system = make_system(env, workdir, "google")
    system.port = port
    try:
        # Two auth replicas: a sign-in started on one may finish on the other.
        yield system.start({"auth": 2, "rooms": 1, "queue": 1, "chat": 1, "gateway": 1})
    finally:
        system.stop()
        nats.stop()


# -- a browser, as far as sign-in goes --------------------------------------------------------


class _AuthPayload(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.payload: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.inside = tag == "script" and ("id", "sharetube-auth") in attrs

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.payload = orjson.loads(data)
            self.inside = False


def page_payload(page: httpx.Response) -> dict[str, Any]:
    parser = _AuthPayload()
    parser.feed(page.text)
    assert parser.payload is not None, page.text[:500]
    return parser.payload


def browser() -> httpx.AsyncClient:
    """Keeps cookies and follows redirects; a navigation to the extension's chromiumapp.org
    URL is caught, as chrome.identity.launchWebAuthFlow catches it, and never leaves."""
    caught = httpx.MockTransport(lambda request: httpx.Response(200, text="caught"))
    return httpx.AsyncClient(
        follow_redirects=True,
        mounts={"https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org": caught},
        timeout=30,
    )


async def sign_in(system: System, **params: str) -> httpx.Response:
    async with browser() as http:
        return await http.get(f"{system.base_url}/auth/google", params=params)


def fragment_of(response: httpx.Response) -> dict[str, str]:
    """The fragment of the last redirect (a browser keeps it; it never reaches a server)."""
    location = response.history[-1].headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).fragment).items()}


async def me(system: System, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=system.base_url, timeout=30) as http:
        return await http.get("/auth/me", headers={"Authorization": f"Bearer {token}"})


async def page_token(system: System, **params: str) -> tuple[str, dict[str, Any]]:
    page = await sign_in(system, **params)
    assert page.status_code == 200, page.text[:300]
    payload = page_payload(page)
    return payload["token"], payload["user"]


# -- the flows --------------------------------------------------------------------------------


async def test_sign_in_without_redirect_uri_hands_the_token_to_the_opener_page(
    google: System, provider: OidcProvider
) -> None:
    provider.user("zoe@example.com", name="Zoë Example")
    page = await sign_in(google, login_hint="zoe@example.com")
    hops = [*page.history, page]
    # gateway -> provider /authorize -> gateway callback -> the page
    assert [urlsplit(str(h.url)).path for h in hops] == [
        "/auth/google",
        "/authorize",
        "/auth/google/callback",
    ]
    start, authorize = hops[0], hops[1]
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    cookie = start.headers["set-cookie"].lower()
    assert "st_oidc_state=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "path=/auth/google" in cookie
    assert parse_qs(urlsplit(authorize.headers["location"]).query)["state"] == query["state"]
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert f'"{google.base_url}"' in page.text  # postMessage only to the portals' origin
    payload = page_payload(page)
    assert payload["type"] == "sharetube:auth" and payload["user"]["name"] == "Zoë Example"
    token = payload["token"]
    user, claims = tokens.verify(SECRET, token)
    assert user.id == payload["user"]["id"] and user.admin is False
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME_S  # ACCESS_TOKEN_EXPIRES_SECONDS
    profile = (await me(google, token)).json()
    assert profile["kind"] == "google" and profile["email"] == "zoe@example.com"
    # The token opens a socket like any other.
    client = await WsClient.connect(google.ws_url, token)
    try:
        room = (await client.call("room.create", {}))["room"]["code"]
        assert (await client.call("join", room=room))["members"][0]["user_id"] == user.id
    finally:
        await client.close()


async def test_the_extension_receives_the_token_at_its_chromiumapp_url(google: System) -> None:
    done = await sign_in(
        google, redirect_uri=f"{EXTENSION_ORIGIN}/callback?x=1", login_hint="ext@example.com"
    )
    assert done.text == "caught"
    location = done.history[-1].headers["location"]
    assert location.startswith(f"{EXTENSION_ORIGIN}/callback?x=1#token=")
    assert done.history[-1].status_code == 303
    assert done.history[-1].headers["referrer-policy"] == "no-referrer"
    token = fragment_of(done)["token"]
    assert (await me(google, token)).json()["email"] == "ext@example.com"


async def test_a_portal_page_on_the_backend_receives_the_token(google: System) -> None:
    async with browser() as http:
        start = await http.get(
            f"{google.base_url}/auth/google",
            params={"redirect_uri": f"{google.base_url}/dashboard"},
        )
    location = start.history[-1].headers["location"]
    assert location.startswith(f"{google.base_url}/dashboard#token=")
    token = parse_qs(urlsplit(location).fragment)["token"][0]
    assert (await me(google, token)).status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org.evil.example/",
        "http://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org/",
        "https://user@abcdefghijklmnopabcdefghijklmnop.chromiumapp.org/",
        "https://zzzz.chromiumapp.org/",
        "javascript:alert(1)",
        "//evil.example/",
        "/dashboard",
        "BASE#already-a-fragment",
        "BASE:1/elsewhere",
    ],
)
async def test_a_redirect_uri_off_the_allow_list_is_refused(google: System, target: str) -> None:
    target = target.replace("BASE", google.base_url)
    async with httpx.AsyncClient(timeout=30) as http:
        reply = await http.get(f"{google.base_url}/auth/google", params={"redirect_uri": target})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "bad_request"
    assert "location" not in reply.headers and "set-cookie" not in reply.headers


async def test_the_same_google_account_is_always_the_same_user(
    google: System, provider: OidcProvider
) -> None:
    first_token, first = await page_token(google, login_hint="sam@example.com")
    again_token, again = await page_token(google, login_hint="sam@example.com")
    assert first["id"] == again["id"]
    assert (
        tokens.verify(SECRET, first_token)[1]["sid"] != tokens.verify(SECRET, again_token)[1]["sid"]
    )  # each sign-in is its own session
    # The account is its `sub`: a new address at Google still finds it.
    sub = provider.user("sam@example.com").sub
    provider.user("samuel@example.com", sub=sub)
    _token, moved = await page_token(google, login_hint="samuel@example.com")
    assert moved["id"] == first["id"]


async def test_a_guest_becomes_a_google_account_keeping_their_id_and_rooms(
    google: System,
) -> None:
    guest_token, guest_user = guest(google.base_url, "Guest Gil")
    client = await WsClient.connect(google.ws_url, guest_token)
    try:
        room = (await client.call("room.create", {}))["room"]["code"]
        await client.call("join", room=room)
        said = await client.call("chat.send", {"text": "as a guest"}, room=room)
    finally:
        await client.close()
    assert (await me(google, guest_token)).json()["kind"] == "guest"
    token, user = await page_token(google, token=guest_token, login_hint="gil@example.com")
    assert user["id"] == guest_user["id"] and user["name"] == "Guest Gil"
    profile = (await me(google, token)).json()
    assert profile["kind"] == "google" and profile["email"] == "gil@example.com"
    client = await WsClient.connect(google.ws_url, token)
    try:
        snapshot = await client.call("join", room=room)  # still the room's owner
        assert snapshot["room"]["owner_id"] == user["id"]
        assert snapshot["chat"] == [said["message"]]
    finally:
        await client.close()
    # Signing in to that Google account later is the same user, without the guest token.
    _again, later = await page_token(google, login_hint="gil@example.com")
    assert later["id"] == guest_user["id"]


async def test_a_guest_signing_in_to_an_existing_google_account_joins_that_account(
    google: System,
) -> None:
    _token, owner = await page_token(google, login_hint="taken@example.com")
    guest_token, guest_user = guest(google.base_url, "Second Guest")
    _token2, user = await page_token(google, token=guest_token, login_hint="taken@example.com")
    assert user["id"] == owner["id"] != guest_user["id"]
    assert (await me(google, guest_token)).json()["kind"] == "guest"  # left as it was


async def test_a_bad_guest_token_does_not_start_a_sign_in(google: System) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        reply = await http.get(f"{google.base_url}/auth/google", params={"token": "not-a-jwt"})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized"


async def test_admin_emails_get_admin_tokens_only_when_verified(
    google: System, provider: OidcProvider
) -> None:
    token, _user = await page_token(google, login_hint="boss@example.com")
    assert tokens.verify(SECRET, token)[0].admin is True
    assert (await me(google, token)).json()["admin"] is True
    provider.user("ops@example.com", email_verified=False)
    unverified, _ = await page_token(google, login_hint="ops@example.com")
    assert tokens.verify(SECRET, unverified)[0].admin is False
    plain, _ = await page_token(google, login_hint="pleb@example.com")
    assert tokens.verify(SECRET, plain)[0].admin is False


async def test_logout_makes_the_token_stop_working(google: System) -> None:
    token, _user = await page_token(google, login_hint="leaver@example.com")
    other_session, _ = await page_token(google, login_hint="leaver@example.com")
    open_socket = await WsClient.connect(google.ws_url, token)
    try:
        assert (await me(google, token)).status_code == 200
        async with httpx.AsyncClient(base_url=google.base_url, timeout=30) as http:
            bye = await http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
            assert bye.status_code == 204
            again = await http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
            assert again.status_code == 401
            assert (await http.post("/auth/logout")).status_code == 401
        gone = await me(google, token)
        assert gone.status_code == 401 and gone.json()["error"]["code"] == "unauthorized"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{google.ws_url}?token={token}")
        assert refused.value.response.status_code == 403
        # The socket it had open is closed too, with the unauthorized close code.
        assert await open_socket.closed == (4001, "signed out")
        # Signing out one session leaves the user's others alone.
        assert (await me(google, other_session)).status_code == 200
    finally:
        await open_socket.close()


async def test_guest_tokens_honour_the_configured_lifetime_and_expired_ones_fail(
    google: System,
) -> None:
    token, user = guest(google.base_url, "Timed Tim")
    claims = tokens.verify(SECRET, token)[1]
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME_S
    expired = tokens.issue(SECRET, UserRef(**user), expires_s=-5)
    assert (await me(google, expired)).status_code == 401
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{google.ws_url}?token={expired}")


# -- what a sign-in must refuse ---------------------------------------------------------------


async def test_a_callback_from_another_browser_is_refused(google: System) -> None:
    """Login CSRF: someone else's callback URL (their code and state) opened in this browser
    without the state cookie signs nobody in."""
    async with browser() as attacker:
        start = await attacker.get(f"{google.base_url}/auth/google", follow_redirects=False)
        at_provider = await attacker.get(start.headers["location"], follow_redirects=False)
    callback = at_provider.headers["location"]
    async with browser() as victim:
        page = await victim.get(callback)
    assert page.status_code == 400
    payload = page_payload(page)
    assert payload["error"]["code"] == "unauthorized" and "token" not in payload
    assert "not started in this browser" in payload["error"]["message"]


async def test_a_callback_works_once(google: System) -> None:
    async with browser() as http:
        page = await http.get(f"{google.base_url}/auth/google")
        callback = str(page.history[-1].url)
        assert page_payload(page)["token"]
        # Replayed with the cookie put back: the state was used up.
        http.cookies.set("st_oidc_state", parse_qs(urlsplit(callback).query)["state"][0])
        replay = await http.get(callback)
    assert replay.status_code == 400
    error = page_payload(replay)["error"]
    assert error["code"] == "unauthorized" and "already used" in error["message"]


async def test_a_refused_consent_goes_back_to_the_extension_as_an_error(
    google: System, provider: OidcProvider
) -> None:
    provider.deny_next = True
    done = await sign_in(google, redirect_uri=f"{EXTENSION_ORIGIN}/")
    fragment = fragment_of(done)
    assert fragment["error"] == "unauthorized" and "token" not in fragment


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "someone-else"}, {"nonce": "replayed"}, {"iss": "https://evil.example"}],
    ids=["audience", "nonce", "issuer"],
)
async def test_an_id_token_that_fails_verification_signs_nobody_in(
    google: System, provider: OidcProvider, overrides: dict[str, str]
) -> None:
    provider.id_token_overrides.update(overrides)
    page = await sign_in(google, login_hint="mallory@example.com")
    assert page.status_code == 400
    payload = page_payload(page)
    assert payload["error"]["code"] == "unauthorized" and "token" not in payload
    assert re.search(r"could not be verified", payload["error"]["message"])


async def test_without_google_client_id_sign_in_is_not_configured_and_guests_work(
    system: System,
) -> None:
    async with httpx.AsyncClient(base_url=system.base_url, timeout=30) as http:
        reply = await http.get("/auth/google", follow_redirects=False)
        assert reply.status_code == 501
        assert reply.json()["error"]["code"] == "not_configured"
        callback = await http.get("/auth/google/callback?state=x&code=y")
        assert callback.status_code == 400  # no sign-in was started here
    token, user = guest(system.base_url, "Still a guest")
    assert (await me(system, token)).json()["id"] == user["id"]
