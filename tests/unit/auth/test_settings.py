"""The auth service's configuration: Google sign-in is off without a client id, and settings
that would leak tokens or accept forged ones are refused at start."""

import pytest
from pydantic import ValidationError

from services.auth.settings import AuthSettings


def settings(**env: str) -> AuthSettings:
    return AuthSettings(_env_file=None, **env)  # type: ignore[arg-type]


def test_defaults_point_at_google_and_leave_it_off() -> None:
    s = settings()
    assert s.oidc_issuer == "https://accounts.google.com"
    assert s.google_enabled is False
    assert s.access_token_expires_seconds == 14 * 24 * 3600
    assert s.extension_origins == [] and s.admins == frozenset()


def test_lists_are_parsed_and_normalised() -> None:
    s = settings(
        google_client_id="id",
        google_client_secret="secret",
        extension_redirect_origins=" https://a.chromiumapp.org/ ,https://b.chromiumapp.org,",
        admin_emails="Boss@Example.com, ops@example.com ,",
    )
    assert s.google_enabled
    assert s.extension_origins == ["https://a.chromiumapp.org", "https://b.chromiumapp.org"]
    assert s.admins == {"boss@example.com", "ops@example.com"}


def test_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "GOOGLE_CLIENT_ID": "cid",
        "GOOGLE_CLIENT_SECRET": "csecret",
        "OIDC_ISSUER": "https://login.example.org",
        "BACKEND_BASE_URL": "https://sharetube.example",
        "EXTENSION_REDIRECT_ORIGINS": "https://x.chromiumapp.org",
        "ADMIN_EMAILS": "a@example.com",
        "ACCESS_TOKEN_EXPIRES_SECONDS": "60",
    }.items():
        monkeypatch.setenv(name, value)
    s = AuthSettings()
    assert (s.google_client_id, s.google_client_secret) == ("cid", "csecret")
    assert s.oidc_issuer == "https://login.example.org"
    assert s.backend_base_url == "https://sharetube.example"
    assert s.extension_origins == ["https://x.chromiumapp.org"]
    assert s.admins == {"a@example.com"}
    assert s.access_token_expires_seconds == 60


@pytest.mark.parametrize(
    "env",
    [
        {"google_client_id": "id"},  # a client id without its secret
        {"extension_redirect_origins": "http://x.chromiumapp.org"},
        {
            "SHARETUBE_ENV": "production",
            "jwt_secret": "a-production-secret-0123456789abcdef",
            "google_client_id": "id",
            "google_client_secret": "s",
            "backend_base_url": "http://sharetube.example",
        },
        {
            "SHARETUBE_ENV": "production",
            "jwt_secret": "a-production-secret-0123456789abcdef",
            "google_client_id": "id",
            "google_client_secret": "s",
            "backend_base_url": "https://sharetube.example",
            "oidc_issuer": "http://login.example.org",
        },
    ],
)
def test_unsafe_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        settings(**env)
