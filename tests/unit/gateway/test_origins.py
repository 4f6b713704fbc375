"""The socket's Origin check: which pages may open /ws."""

import pytest

from services.gateway.origins import OriginPolicy

DEFAULT = OriginPolicy.build("", "http://127.0.0.1:8000", "*")


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "x", True),  # no Origin: not a browser
        ("http://127.0.0.1:8000", "gw:9", True),  # BACKEND_BASE_URL
        ("HTTP://127.0.0.1:8000", "gw:9", True),  # origins compare case-insensitively
        ("https://sharetube.example", "sharetube.example", True),  # the gateway's own host
        ("http://sharetube.example", "sharetube.example", True),
        ("chrome-extension://abcdefghijklmnopabcdefghijklmnop", None, True),
        ("https://evil.example", "sharetube.example", False),
        ("https://sharetube.example.evil.example", "sharetube.example", False),
        ("null", "sharetube.example", False),
        ("", "sharetube.example", False),
        ("https://evil.example", None, False),
    ],
)
def test_the_default_policy(origin: str | None, host: str | None, allowed: bool) -> None:
    assert DEFAULT.allows(origin, host) is allowed


def test_listed_origins_and_cors_origins_are_allowed() -> None:
    policy = OriginPolicy.build(
        "https://portal.example, https://other.example/", "https://api.example", "https://a.example"
    )
    for origin in ("https://portal.example", "https://other.example", "https://a.example"):
        assert policy.allows(origin, "api.example")
    assert policy.allows("https://api.example", None)
    assert not policy.allows("https://b.example", "api.example")


def test_naming_extensions_pins_them() -> None:
    policy = OriginPolicy.build("chrome-extension://ourid", "http://127.0.0.1:8000", "*")
    assert policy.allows("chrome-extension://ourid", None)
    assert not policy.allows("chrome-extension://someoneelse", None)


def test_a_star_allows_any_page() -> None:
    assert OriginPolicy.build("*", "http://x", "*").allows("https://anything.example", None)
