"""The OpenID Connect relying party against a real (local) provider: what it accepts, and
every ID token or exchange it must refuse."""

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from services.auth.oidc import OidcClient, OidcError, ProviderUnavailable
from services.common.devstack import free_port
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, serve

CALLBACK = "http://127.0.0.1:1/auth/google/callback"  # never called: we read the redirect


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with serve(OidcProvider()) as running:
        yield running


@pytest.fixture
def fresh(provider: OidcProvider) -> Iterator[OidcProvider]:
    """The provider with its knobs back at their defaults after each test."""
    yield provider
    provider.id_token_overrides.clear()
    provider.sign_with_foreign_key = False
    provider.deny_next = False


def client_for(provider: OidcProvider) -> OidcClient:
    return OidcClient(provider.issuer, CLIENT_ID, CLIENT_SECRET, timeout_s=10)


@dataclass
class Flow:
    url: str
    state: str
    nonce: str
    verifier: str
    code: str


async def authorize(client: OidcClient, login_hint: str | None = None) -> Flow:
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    url = await client.authorization_url(
        CALLBACK, state=state, nonce=nonce, code_verifier=verifier, login_hint=login_hint
    )
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 302
    back = urlsplit(response.headers["location"])
    params = parse_qs(back.query)
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    assert params["state"] == [state]
    return Flow(url, state, nonce, verifier, params["code"][0])


async def finish(client: OidcClient, flow: Flow, **over: str):  # type: ignore[no-untyped-def]
    args = {"code": flow.code, "code_verifier": flow.verifier, "nonce": flow.nonce, **over}
    return await client.identity(redirect_uri=CALLBACK, **args)


async def test_a_sign_in_yields_the_verified_identity(fresh: OidcProvider) -> None:
    client = client_for(fresh)
    fresh.user("zoe@example.com", name="Zoë Example")
    flow = await authorize(client, login_hint="zoe@example.com")
    query = parse_qs(urlsplit(flow.url).query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [CALLBACK]
    assert set(query["scope"][0].split()) == {"openid", "email", "profile"}
    assert query["nonce"] == [flow.nonce]
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"][0] != flow.verifier  # the hash travels, not the secret
    assert query["login_hint"] == ["zoe@example.com"]
    identity = await finish(client, flow)
    assert identity.sub == fresh.users["zoe@example.com"].sub
    assert identity.email == "zoe@example.com"
    assert identity.email_verified is True
    assert identity.name == "Zoë Example"


async def test_an_unverified_email_is_reported_as_such(fresh: OidcProvider) -> None:
    client = client_for(fresh)
    fresh.user("unverified@example.com", email_verified=False)
    identity = await finish(client, await authorize(client, "unverified@example.com"))
    assert identity.email_verified is False


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "another-client.apps.example.com"},
        {"aud": None},
        {"iss": "https://accounts.example.org"},
        {"exp": int(time.time()) - 3600},
        {"nonce": "not-the-nonce-we-sent"},
        {"nonce": None},
        {"sub": None},
        {"azp": "another-client.apps.example.com"},
        {"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"},
    ],
    ids=lambda o: "-".join(f"{k}={'missing' if v is None else 'wrong'}" for k, v in o.items()),
)
async def test_an_id_token_with_a_bad_claim_is_refused(
    fresh: OidcProvider, overrides: dict[str, object]
) -> None:
    client = client_for(fresh)
    flow = await authorize(client)
    fresh.id_token_overrides.update(overrides)
    with pytest.raises(OidcError):
        await finish(client, flow)


async def test_a_signature_by_a_key_the_jwks_does_not_publish_is_refused(
    fresh: OidcProvider,
) -> None:
    client = client_for(fresh)
    flow = await authorize(client)
    fresh.sign_with_foreign_key = True
    with pytest.raises(OidcError):
        await finish(client, flow)


async def test_the_nonce_must_be_the_one_of_this_sign_in(fresh: OidcProvider) -> None:
    client = client_for(fresh)
    flow = await authorize(client)
    with pytest.raises(OidcError):
        await finish(client, flow, nonce="the-nonce-of-another-sign-in")


async def test_the_pkce_verifier_must_match(fresh: OidcProvider) -> None:
    client = client_for(fresh)
    flow = await authorize(client)
    with pytest.raises(OidcError):
        await finish(client, flow, code_verifier=secrets.token_urlsafe(64))


async def test_a_code_works_once(fresh: OidcProvider) -> None:
    client = client_for(fresh)
    flow = await authorize(client)
    await finish(client, flow)
    with pytest.raises(OidcError):
        await finish(client, flow)


async def test_a_wrong_client_secret_is_refused(fresh: OidcProvider) -> None:
    client = OidcClient(fresh.issuer, CLIENT_ID, "not-the-secret", timeout_s=10)
    with pytest.raises(OidcError):
        await finish(client, await authorize(client))


async def test_a_new_signing_key_is_fetched_when_the_provider_rotates(
    fresh: OidcProvider,
) -> None:
    client = client_for(fresh)
    await finish(client, await authorize(client))  # the JWKS is cached now
    fresh.rotate_key()
    identity = await finish(client, await authorize(client))
    assert identity.email == fresh.default_email


async def test_discovery_must_name_the_configured_issuer(fresh: OidcProvider) -> None:
    real = fresh.issuer
    fresh.issuer = "https://accounts.example.org"  # what its discovery document now says
    try:
        client = OidcClient(real, CLIENT_ID, CLIENT_SECRET, timeout_s=10)
        with pytest.raises(OidcError):
            await client.authorization_url(CALLBACK, state="s", nonce="n", code_verifier="v" * 43)
    finally:
        fresh.issuer = real


async def test_a_provider_that_does_not_answer_is_unavailable() -> None:
    client = OidcClient(f"http://127.0.0.1:{free_port()}", CLIENT_ID, CLIENT_SECRET, timeout_s=5)
    with pytest.raises(ProviderUnavailable):
        await client.authorization_url(CALLBACK, state="s", nonce="n", code_verifier="v" * 43)
