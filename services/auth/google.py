"""Google sign-in (OpenID Connect, authorization code + PKCE), served to the gateways' HTTP
face over NATS, so any auth replica may start a sign-in and any other finish it.

start:  a fresh state, nonce and PKCE verifier; the last two (and where the token goes at the
        end) wait in Redis under the state, single use, for `oidc_state_ttl_s`.
finish: the state is taken (GETDEL), the code exchanged, the ID token verified (oidc.py),
        the user found or made, and one of our tokens issued.

Users are found by the provider's `sub`, else by a verified e-mail not yet linked to another
Google identity; a guest who signs in while holding their guest token becomes that Google
account, keeping their user id. An address another account holds is never taken over.
"""

import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis.asyncio as aioredis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import sessions, tokens
from services.common.contracts.envelope import (
    GoogleFinish,
    GoogleFinishReply,
    GoogleStart,
    GoogleStartReply,
)
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.common.jsonutil import now_ms

from . import redirects
from . import repository as repo
from .oidc import Identity, OidcClient, OidcError, ProviderUnavailable
from .service import clean_name

log = logging.getLogger(__name__)

STATE_PREFIX: Final = "st:auth:oidc:"
CALLBACK_PATH: Final = "/auth/google/callback"


@dataclass(frozen=True, slots=True)
class GoogleConfig:
    jwt_secret: str
    expires_s: int
    backend_base_url: str
    extension_origins: list[str]
    admins: frozenset[str]
    state_ttl_s: int

    @property
    def callback_url(self) -> str:
        return self.backend_base_url.rstrip("/") + CALLBACK_PATH

    @property
    def allowed_origins(self) -> list[str]:
        return [self.backend_base_url, *self.extension_origins]


def display_name(identity: Identity) -> str:
    for candidate in (identity.name, (identity.email or "").split("@")[0]):
        if candidate:
            try:
                return clean_name(candidate)
            except ServiceError:
                continue
    return "Google user"


class GoogleSignIn:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: aioredis.Redis,
        oidc: OidcClient | None,
        config: GoogleConfig,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.oidc = oidc
        self.config = config

    def _client(self) -> OidcClient:
        if self.oidc is None:
            raise ServiceError(
                ErrorCode.NOT_CONFIGURED, "Google sign-in is not configured (GOOGLE_CLIENT_ID)."
            )
        return self.oidc

    async def start(self, request: GoogleStart) -> GoogleStartReply:
        oidc = self._client()
        if request.redirect_uri is not None and not redirects.is_allowed(
            request.redirect_uri, self.config.allowed_origins
        ):
            raise ServiceError(ErrorCode.BAD_REQUEST, "redirect_uri: not an allowed address")
        upgrade_user_id = None
        if request.upgrade_token:
            guest, _claims = await sessions.authenticate(
                self.redis, self.config.jwt_secret, request.upgrade_token
            )
            upgrade_user_id = guest.id
        state = secrets.token_urlsafe(32)
        saved = {
            "nonce": secrets.token_urlsafe(32),
            # RFC 7636: 43-128 characters; 64 random bytes make 86.
            "code_verifier": secrets.token_urlsafe(64),
            "redirect_uri": request.redirect_uri,
            "upgrade_user_id": upgrade_user_id,
        }
        try:
            url = await oidc.authorization_url(
                self.config.callback_url,
                state=state,
                nonce=saved["nonce"],
                code_verifier=saved["code_verifier"],
                login_hint=request.login_hint,
            )
        except (OidcError, ProviderUnavailable) as exc:
            log.warning("google sign-in cannot start: %s", exc)
            raise ServiceError(ErrorCode.UNAVAILABLE, "Google sign-in is unavailable.") from exc
        await self.redis.set(STATE_PREFIX + state, orjson.dumps(saved), ex=self.config.state_ttl_s)
        return GoogleStartReply(url=url, state=state)

    async def finish(self, request: GoogleFinish) -> GoogleFinishReply:
        oidc = self._client()
        raw = await self.redis.getdel(STATE_PREFIX + request.state)
        if raw is None:
            raise ServiceError(
                ErrorCode.UNAUTHORIZED, "This sign-in expired or was already used; start again."
            )
        saved: dict[str, Any] = orjson.loads(raw)
        redirect_uri = saved.get("redirect_uri")

        def failed(code: ErrorCode, message: str) -> GoogleFinishReply:
            return GoogleFinishReply(redirect_uri=redirect_uri, error=code, message=message)

        if request.error or not request.code:
            return failed(ErrorCode.UNAUTHORIZED, "Google sign-in was cancelled or refused.")
        try:
            identity = await oidc.identity(
                code=request.code,
                redirect_uri=self.config.callback_url,
                code_verifier=saved["code_verifier"],
                nonce=saved["nonce"],
            )
        except OidcError as exc:
            log.warning("google sign-in refused: %s", exc)
            return failed(ErrorCode.UNAUTHORIZED, "Google sign-in could not be verified.")
        except ProviderUnavailable as exc:
            log.warning("google sign-in failed: %s", exc)
            return failed(ErrorCode.UNAVAILABLE, "Google did not answer; try again.")
        user = await self._user_for(identity, saved.get("upgrade_user_id"))
        token = tokens.issue(self.config.jwt_secret, user, self.config.expires_s)
        return GoogleFinishReply(redirect_uri=redirect_uri, token=token, user=user)

    async def _user_for(self, identity: Identity, upgrade_user_id: str | None) -> UserRef:
        try:
            return await self._upsert(identity, upgrade_user_id)
        except IntegrityError:
            # A concurrent first sign-in of the same identity made the row: use it.
            return await self._upsert(identity, upgrade_user_id)

    async def _upsert(self, identity: Identity, upgrade_user_id: str | None) -> UserRef:
        # Only an address the provider verified may find an account or make an admin.
        email = identity.email if identity.email_verified else None
        admin = email is not None and email in self.config.admins
        now = now_ms()
        async with self.engine.begin() as conn:
            row = await repo.get_by_google_sub(conn, identity.sub)
            holder = await repo.get_by_email(conn, email) if email is not None else None
            if row is None and holder is not None and holder.google_sub is None:
                row = holder  # an account known by its address, not yet linked to Google
            if row is None and upgrade_user_id is not None:
                guest = await repo.get_user(conn, upgrade_user_id)
                if guest is not None and guest.kind == "guest":
                    row = guest
            if holder is not None and (row is None or holder.id != row.id):
                # Another account holds the address (a recycled one, or linked to another
                # Google identity): never take that account over, nor its address.
                email = None
            if row is None:
                user = UserRef(id=uuid.uuid4().hex, name=display_name(identity), admin=admin)
                await repo.insert_user(
                    conn,
                    id=user.id,
                    name=user.name,
                    kind="google",
                    email=email,
                    google_sub=identity.sub,
                    created_at_ms=now,
                    last_seen_ms=now,
                )
                return user
            await repo.update_user(
                conn,
                row.id,
                kind="google",
                google_sub=identity.sub,
                email=email or row.email,
                last_seen_ms=now,
            )
            # Guests keep the name they chose; the Google name only names new accounts.
            return UserRef(id=row.id, name=row.name, admin=admin)
