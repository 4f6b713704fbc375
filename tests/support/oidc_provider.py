"""A small but real OpenID Connect provider for the tests: Google's part of the sign-in.

It speaks the protocol ShareTube's auth service uses with Google — discovery, the
authorization endpoint, the token endpoint with client authentication and PKCE, RS256-signed
ID tokens and the JWKS to check them — so the whole redirect flow runs for real. The consent
screen is skipped: /authorize approves at once, as the user named by `login_hint` (made up
on first use) or the default user.

Knobs for the tests that prove ShareTube refuses what it must: `id_token_overrides` changes
the claims of the next ID tokens, `sign_with_foreign_key` signs them with a key the JWKS does
not publish, `deny_next` answers the next authorization with `access_denied`, `rotate_key`
starts signing with a new key (published alongside the old one).

`serve(provider)` runs it on a free port in a thread, with uvicorn.
"""

import base64
import contextlib
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from services.common.devstack import free_port

CLIENT_ID = "sharetube-test.apps.example.com"
CLIENT_SECRET = "test-client-secret-0123456789"
ID_TOKEN_LIFETIME_S = 300


@dataclass
class ProviderUser:
    sub: str
    email: str
    name: str
    email_verified: bool = True


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    user: ProviderUser
    nonce: str | None
    code_challenge: str
    scope: str
    issued_at: float


def _b64url_sha256(value: str) -> str:
    digest = hashlib.sha256(value.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@dataclass
class OidcProvider:
    issuer: str = ""
    clients: dict[str, str] = field(default_factory=lambda: {CLIENT_ID: CLIENT_SECRET})
    # Redirect URIs registered per client; empty means any (set by the test that knows them).
    redirect_uris: dict[str, set[str]] = field(default_factory=dict)
    users: dict[str, ProviderUser] = field(default_factory=dict)
    default_email: str = "ann@example.com"
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    sign_with_foreign_key: bool = False
    deny_next: bool = False
    codes: dict[str, Grant] = field(default_factory=dict)
    token_requests: int = 0

    def __post_init__(self) -> None:
        self.keys: list[RSAKey] = [_new_key("k1")]
        self._foreign = _new_key("k1")  # same kid, different key: only the signature tells

    # -- test knobs ------------------------------------------------------------------------

    def user(
        self,
        email: str,
        *,
        sub: str | None = None,
        name: str | None = None,
        email_verified: bool | None = None,
    ) -> ProviderUser:
        """The user with this e-mail, made on first use (its sub is stable per e-mail);
        given fields replace the stored ones."""
        found = self.users.get(email) or ProviderUser(
            sub="g-" + hashlib.sha256(email.encode()).hexdigest()[:20],
            email=email,
            name=email.split("@")[0].capitalize(),
        )
        if sub is not None:
            found.sub = sub
        if name is not None:
            found.name = name
        if email_verified is not None:
            found.email_verified = email_verified
        self.users[email] = found
        return found

    def rotate_key(self) -> str:
        kid = f"k{len(self.keys) + 1}"
        self.keys.append(_new_key(kid))
        return kid

    # -- the protocol ----------------------------------------------------------------------

    def discovery(self, _request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code"],
                "claims_supported": [
                    "aud",
                    "email",
                    "email_verified",
                    "exp",
                    "iat",
                    "iss",
                    "name",
                    "sub",
                ],
            }
        )

    def jwks(self, _request: Request) -> Response:
        return JSONResponse(KeySet(self.keys).as_dict(private=False))

    def authorize(self, request: Request) -> Response:
        q = request.query_params
        client_id, redirect_uri = q.get("client_id", ""), q.get("redirect_uri", "")
        if client_id not in self.clients:
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        allowed = self.redirect_uris.get(client_id)
        if not redirect_uri or (allowed and redirect_uri not in allowed):
            # Never redirect to an unregistered URI: show an error instead, as Google does.
            return JSONResponse({"error": "redirect_uri_mismatch"}, status_code=400)

        def back(**params: str) -> Response:
            params["state"] = q.get("state", "")
            return RedirectResponse(f"{redirect_uri}?{urlencode(params)}", status_code=302)

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in q.get("scope", "").split():
            return back(error="invalid_scope")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE S256 required")
        if self.deny_next:
            self.deny_next = False
            return back(error="access_denied")
        code = secrets.token_urlsafe(24)
        self.codes[code] = Grant(
            client_id=client_id,
            redirect_uri=redirect_uri,
            user=self.user(q.get("login_hint") or self.default_email),
            nonce=q.get("nonce"),
            code_challenge=q["code_challenge"],
            scope=q["scope"],
            issued_at=time.time(),
        )
        return back(code=code)

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        # application/x-www-form-urlencoded, parsed by hand (no python-multipart here).
        form = dict(parse_qsl((await request.body()).decode()))
        client_id, secret = self._client_credentials(request, form)
        expected = self.clients.get(client_id or "")
        if expected is None or not hmac.compare_digest(expected, secret or ""):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        grant = self.codes.pop(str(form.get("code", "")), None)  # single use
        if grant is None or grant.client_id != client_id or time.time() - grant.issued_at > 60:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        verifier = str(form.get("code_verifier", ""))
        if not verifier or _b64url_sha256(verifier) != grant.code_challenge:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "PKCE"}, status_code=400
            )
        access_token = secrets.token_urlsafe(32)
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 3599,
                "scope": grant.scope,
                "id_token": self.id_token(grant, access_token),
            },
            headers={"Cache-Control": "no-store"},
        )

    def id_token(self, grant: Grant, access_token: str) -> str:
        now = int(time.time())
        # at_hash: the left half of SHA-256 of the access token (OpenID Connect Core 3.1.3.6).
        half = hashlib.sha256(access_token.encode()).digest()[:16]
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.user.sub,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME_S,
            "email": grant.user.email,
            "email_verified": grant.user.email_verified,
            "name": grant.user.name,
            "at_hash": base64.urlsafe_b64encode(half).rstrip(b"=").decode(),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        for name, value in self.id_token_overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        key = self._foreign if self.sign_with_foreign_key else self.keys[-1]
        return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)

    @staticmethod
    def _client_credentials(
        request: Request, form: dict[str, str]
    ) -> tuple[str | None, str | None]:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            with contextlib.suppress(ValueError):
                decoded = base64.b64decode(header[6:]).decode()
                client_id, _, secret = decoded.partition(":")
                return unquote_plus(client_id), unquote_plus(secret)
        return form.get("client_id"), form.get("client_secret")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )


@contextlib.contextmanager
def serve(provider: OidcProvider) -> Iterator[OidcProvider]:
    """Run the provider on a free port of 127.0.0.1 until the block ends."""
    port = free_port()
    provider.issuer = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(
        provider.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="oidc-provider", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test OpenID provider did not start")
        time.sleep(0.02)
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(10)
