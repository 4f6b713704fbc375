"""Google sign-in's rules inside auth, against real PostgreSQL and Redis: the state is single
use, a refusal goes back to where the token would have gone, and accounts are found by sub,
then by verified e-mail, then by the guest who started the sign-in."""

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth import repository as repo
from services.auth.google import GoogleConfig, GoogleSignIn, display_name
from services.auth.oidc import Identity, OidcClient
from services.common import tokens
from services.common.contracts.envelope import GoogleFinish, GoogleStart
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.common.db import create_engine
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, serve

pytestmark = pytest.mark.integration

SECRET = "test-secret-0123456789abcdef0123456789"
EXTENSION = "https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org"
CONFIG = GoogleConfig(
    jwt_secret=SECRET,
    expires_s=3600,
    backend_base_url="http://127.0.0.1:8000",
    extension_origins=[EXTENSION],
    admins=frozenset({"boss@example.com"}),
    state_ttl_s=600,
)


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with serve(OidcProvider()) as running:
        yield running


@pytest.fixture
async def parts(infra: dict[str, str]) -> AsyncIterator[tuple[AsyncEngine, aioredis.Redis]]:
    engine = create_engine(infra["DATABASE_URL"], pool_size=4)
    redis = aioredis.from_url(infra["REDIS_URL"])
    yield engine, redis
    await redis.aclose()
    await engine.dispose()


@pytest.fixture
def signin(parts: tuple[AsyncEngine, aioredis.Redis], provider: OidcProvider) -> GoogleSignIn:
    oidc = OidcClient(provider.issuer, CLIENT_ID, CLIENT_SECRET, timeout_s=10)
    return GoogleSignIn(*parts, oidc, CONFIG)


def identity(email: str | None = None, verified: bool = True, **over: str) -> Identity:
    email = email or f"{uuid.uuid4().hex[:8]}@example.com"
    return Identity(
        sub=over.get("sub", "g-" + uuid.uuid4().hex),
        email=email,
        email_verified=verified,
        name=over.get("name", "Ann"),
    )


def test_display_names() -> None:
    assert display_name(identity(name="  Zoë\x00 ")) == "Zoë"
    assert display_name(Identity("s", "pat.smith@example.com", True, None)) == "pat.smith"
    assert display_name(Identity("s", None, False, "\x00")) == "Google user"
    assert len(display_name(identity(name="n" * 100))) == 40


async def test_without_a_client_id_nothing_starts(
    parts: tuple[AsyncEngine, aioredis.Redis],
) -> None:
    off = GoogleSignIn(*parts, None, CONFIG)
    for call in (off.start(GoogleStart()), off.finish(GoogleFinish(state="s", code="c"))):
        with pytest.raises(ServiceError) as info:
            await call
        assert info.value.code is ErrorCode.NOT_CONFIGURED


async def test_an_unknown_state_is_refused(signin: GoogleSignIn) -> None:
    with pytest.raises(ServiceError) as info:
        await signin.finish(GoogleFinish(state="never-issued", code="c"))
    assert info.value.code is ErrorCode.UNAUTHORIZED


async def test_a_refusal_goes_back_to_the_redirect_uri_and_uses_the_state_up(
    signin: GoogleSignIn,
) -> None:
    started = await signin.start(GoogleStart(redirect_uri=f"{EXTENSION}/"))
    assert started.url.startswith(f"{signin.oidc.issuer}/authorize?")  # type: ignore[union-attr]
    reply = await signin.finish(GoogleFinish(state=started.state, error="access_denied"))
    assert reply.redirect_uri == f"{EXTENSION}/"
    assert reply.error is ErrorCode.UNAUTHORIZED and reply.token is None
    with pytest.raises(ServiceError):
        await signin.finish(GoogleFinish(state=started.state, code="c"))


async def test_a_redirect_uri_off_the_list_does_not_start(signin: GoogleSignIn) -> None:
    with pytest.raises(ServiceError) as info:
        await signin.start(GoogleStart(redirect_uri="https://evil.example/"))
    assert info.value.code is ErrorCode.BAD_REQUEST


async def test_accounts_are_found_by_sub_and_addresses_are_never_taken_over(
    signin: GoogleSignIn,
) -> None:
    first = await signin._upsert(identity("pat@example.com", sub="g-pat"), None)
    assert (await signin._upsert(identity("pat.new@example.com", sub="g-pat"), None)).id == first.id
    # Another Google identity with an address an account holds (recycled): a new account,
    # which gets no address; the holder keeps its own.
    recycled = await signin._upsert(identity("pat.new@example.com", sub="g-other"), None)
    assert recycled.id != first.id
    # An unverified address finds nothing and is not stored.
    stranger = await signin._upsert(identity("pat.new@example.com", verified=False), None)
    assert stranger.id not in (first.id, recycled.id)
    async with signin.engine.connect() as conn:
        assert (await repo.get_user(conn, first.id)).email == "pat.new@example.com"
        assert (await repo.get_user(conn, recycled.id)).email is None
        row = await repo.get_user(conn, stranger.id)
    assert row.email is None and row.kind == "google"


async def test_an_account_known_by_its_address_is_linked_on_first_sign_in(
    signin: GoogleSignIn,
) -> None:
    user_id = uuid.uuid4().hex
    async with signin.engine.begin() as conn:
        await repo.insert_user(
            conn,
            id=user_id,
            name="Seeded",
            kind="guest",
            email="seeded@example.com",
            google_sub=None,
            created_at_ms=1,
            last_seen_ms=1,
        )
    linked = await signin._upsert(identity("seeded@example.com", sub="g-seeded"), None)
    assert (linked.id, linked.name) == (user_id, "Seeded")
    assert (await signin._upsert(identity("x@example.com", sub="g-seeded"), None)).id == user_id


async def test_an_address_another_account_holds_is_not_taken(signin: GoogleSignIn) -> None:
    a = await signin._upsert(identity("holder@example.com", sub="g-holder"), None)
    b = await signin._upsert(identity("mover@example.com", sub="g-mover"), None)
    # Google now reports the mover with the holder's address (it changed hands).
    moved = await signin._upsert(identity("holder@example.com", sub="g-mover"), None)
    assert moved.id == b.id != a.id
    async with signin.engine.connect() as conn:
        assert (await repo.get_user(conn, b.id)).email == "mover@example.com"


async def test_only_guests_are_upgraded(signin: GoogleSignIn) -> None:
    google_user = await signin._upsert(identity(), None)
    other = await signin._upsert(identity(), upgrade_user_id=google_user.id)
    assert other.id != google_user.id  # a Google account is never taken over


async def test_admins_come_from_verified_addresses_on_the_list(signin: GoogleSignIn) -> None:
    assert (await signin._upsert(identity("boss@example.com"), None)).admin is True
    assert (await signin._upsert(identity("boss@example.com", verified=False), None)).admin is False


async def test_an_upgrade_token_must_be_valid(signin: GoogleSignIn) -> None:
    with pytest.raises(ServiceError) as info:
        await signin.start(GoogleStart(upgrade_token="forged"))
    assert info.value.code is ErrorCode.UNAUTHORIZED
    good = tokens.issue(SECRET, UserRef(id=uuid.uuid4().hex, name="g"), 60)
    assert (await signin.start(GoogleStart(upgrade_token=good))).state
