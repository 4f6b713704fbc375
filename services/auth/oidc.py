"""The OpenID Connect relying party (authlib): the authorization URL, the code exchange and
the ID token's checks — signature against the provider's JWKS, issuer, audience, nonce and
expiry. Configured by the issuer URL alone (discovery), so Google in production and a local
provider in the tests run the same code.
"""

import warnings
from dataclasses import dataclass
from typing import Any, Final

import httpx
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import BaseApp, OAuthError
from authlib.integrations.base_client.async_app import AsyncOAuth2Mixin
from authlib.integrations.base_client.async_openid import AsyncOpenIDMixin
from joserfc.errors import JoseError

with warnings.catch_warnings():
    # authlib 1.9 prefers the httpx2 fork and warns on import when it runs on httpx, which
    # it still fully supports; ShareTube uses httpx throughout (move when authlib 2 drops it).
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

SCOPE: Final = "openid email profile"
# Only asymmetric signatures: metadata that offered HS256 or "none" must not make us accept
# a token signed with a shared key, or not at all.
_ASYMMETRIC_ALGS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Google's ID tokens carry its issuer with or without the scheme (its documentation says
# to accept both).
_ISSUER_ALIASES: Final = {"https://accounts.google.com": ("accounts.google.com",)}
# Clock skew allowed on exp / iat between the provider and us.
LEEWAY_S: Final = 60


class OidcError(Exception):
    """The provider refused, or what it sent failed verification."""


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered with a server error."""


@dataclass(frozen=True, slots=True)
class Identity:
    sub: str
    email: str | None
    email_verified: bool
    name: str | None


class _App(AsyncOAuth2Mixin, AsyncOpenIDMixin, BaseApp):
    """authlib's framework-free OAuth 2 + OpenID app (state lives in Redis, not a session)."""

    client_cls = AsyncOAuth2Client


class OidcClient:
    def __init__(self, issuer: str, client_id: str, client_secret: str, timeout_s: float) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._app = _App(
            None,
            name="oidc",
            client_id=client_id,
            client_secret=client_secret,
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "timeout": timeout_s},
        )

    async def _metadata(self) -> dict[str, Any]:
        try:
            metadata = await self._app.load_server_metadata()
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"discovery: {exc!r}") from exc
        if metadata.get("issuer") != self.issuer:
            self._app.server_metadata.clear()  # discover again next time
            raise OidcError(f"discovery names issuer {metadata.get('issuer')!r}")
        algs = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        metadata["id_token_signing_alg_values_supported"] = [
            a for a in algs if a in _ASYMMETRIC_ALGS
        ] or ["RS256"]
        return metadata

    async def authorization_url(
        self,
        redirect_uri: str,
        *,
        state: str,
        nonce: str,
        code_verifier: str,
        login_hint: str | None = None,
    ) -> str:
        await self._metadata()
        extra = {"login_hint": login_hint} if login_hint else {}
        created = await self._app.create_authorization_url(
            redirect_uri, state=state, nonce=nonce, code_verifier=code_verifier, **extra
        )
        return str(created["url"])

    async def identity(
        self, *, code: str, redirect_uri: str, code_verifier: str, nonce: str
    ) -> Identity:
        """Exchange the code (with the PKCE verifier) and verify the ID token it brings."""
        await self._metadata()
        try:
            token = await self._app.fetch_access_token(
                redirect_uri=redirect_uri, code=code, code_verifier=code_verifier
            )
            if "id_token" not in token:
                raise OidcError("the token response has no id_token")
            claims = await self._app.parse_id_token(
                token, nonce, claims_options=self._claims_options(), leeway=LEEWAY_S
            )
        except (OAuthError, JoseError, ValueError, KeyError) as exc:
            raise OidcError(repr(exc)) from exc
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code < 500:
                raise OidcError(repr(exc)) from exc
            raise ProviderUnavailable(repr(exc)) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(repr(exc)) from exc
        email = claims.get("email")
        return Identity(
            sub=str(claims["sub"]),
            email=str(email).lower() if email else None,
            email_verified=claims.get("email_verified") in (True, "true"),
            name=claims.get("name") or claims.get("given_name"),
        )

    def _claims_options(self) -> dict[str, Any]:
        return {
            "iss": {
                "essential": True,
                "values": [self.issuer, *_ISSUER_ALIASES.get(self.issuer, ())],
            },
            "aud": {"essential": True, "values": [self.client_id]},
            "sub": {"essential": True},
            "exp": {"essential": True},
        }
