from pydantic import model_validator

from services.common.settings import CommonSettings


class AuthSettings(CommonSettings):
    # The seed's default: 14 days, so a guest stays the same person across a fortnight.
    access_token_expires_seconds: int = 14 * 24 * 3600

    # Google sign-in (OpenID Connect through authlib). Without a client id it is off and
    # `/auth/google` answers `not_configured`; guests work either way.
    google_client_id: str = ""
    google_client_secret: str = ""
    # Any OpenID Connect provider by its issuer URL (discovery at
    # <issuer>/.well-known/openid-configuration); the tests point it at a local one.
    oidc_issuer: str = "https://accounts.google.com"
    # The public URL of the gateways: the provider sends the browser back to
    # <BACKEND_BASE_URL>/auth/google/callback, which must be registered with it.
    backend_base_url: str = "http://127.0.0.1:8000"
    # Comma list of origins besides BACKEND_BASE_URL that may receive the token at the end,
    # e.g. https://<extension-id>.chromiumapp.org for chrome.identity.launchWebAuthFlow.
    extension_redirect_origins: str = ""
    # Comma list of e-mail addresses whose (verified) Google accounts get `adm` tokens.
    admin_emails: str = ""
    # How long a started sign-in may take: Google's own consent screens time out sooner.
    oidc_state_ttl_s: int = 600
    # Each call to the provider (discovery, token, keys); Google answers in well under 1 s.
    oidc_http_timeout_s: float = 10.0

    @model_validator(mode="after")
    def _google_needs_both(self) -> "AuthSettings":
        if self.google_client_id and not self.google_client_secret:
            raise ValueError("GOOGLE_CLIENT_SECRET must be set with GOOGLE_CLIENT_ID")
        if self.environment == "production" and self.google_client_id:
            for url in (self.oidc_issuer, self.backend_base_url):
                if not url.startswith("https://"):
                    raise ValueError(f"{url} must be https outside development")
        for extension_origin in self.extension_origins:
            if not extension_origin.startswith("https://"):
                raise ValueError(f"EXTENSION_REDIRECT_ORIGINS: {extension_origin} is not https")
        return self

    @property
    def google_enabled(self) -> bool:
        return bool(self.google_client_id)

    @property
    def extension_origins(self) -> list[str]:
        return [
            o.strip().rstrip("/") for o in self.extension_redirect_origins.split(",") if o.strip()
        ]

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(e.strip().lower() for e in self.admin_emails.split(",") if e.strip())
