from services.common.settings import CommonSettings


class AuthSettings(CommonSettings):
    # The seed's default: 14 days, so a guest stays the same person across a fortnight.
    access_token_expires_seconds: int = 14 * 24 * 3600
