"""Where a finished sign-in may send its token: only to the allow-list's origins."""

import pytest

from services.auth.redirects import is_allowed, origin

BACKEND = "https://sharetube.example"
EXTENSION = "https://abcdefghijklmnopabcdefghijklmnop.chromiumapp.org"
ALLOWED = [BACKEND, EXTENSION]


@pytest.mark.parametrize(
    "uri",
    [
        f"{BACKEND}/",
        f"{BACKEND}/dashboard?tab=rooms",
        f"{BACKEND}:443/mobile-remote",
        "HTTPS://ShareTube.Example/x",
        f"{EXTENSION}/",
        f"{EXTENSION}/callback",
        EXTENSION,
    ],
)
def test_allowed(uri: str) -> None:
    assert is_allowed(uri, ALLOWED)


@pytest.mark.parametrize(
    "uri",
    [
        "http://sharetube.example/",  # the scheme is part of the origin
        "https://sharetube.example:8443/",
        "https://sharetube.example.evil.example/",
        "https://evil.example/?https://sharetube.example/",
        "https://sharetube.example@evil.example/",
        "https://user:pw@sharetube.example/",
        "https://other.chromiumapp.org/",
        f"{EXTENSION}/#already",
        f"{EXTENSION}/#",
        "https://sharetube.example\\@evil.example/",
        "https://sharetube.example/\nLocation: https://evil.example/",
        "https://sharetube.example/ x",
        "https://sharetube.example/\x00",
        "//sharetube.example/",
        "/dashboard",
        "javascript:alert(1)",
        "data:text/html,<script>",
        "https://",
        "https://sharetube.example:99999/",
        "",
    ],
)
def test_refused(uri: str) -> None:
    assert not is_allowed(uri, ALLOWED)


def test_nothing_is_allowed_without_an_allow_list() -> None:
    assert not is_allowed(f"{BACKEND}/", [])


def test_origin() -> None:
    assert origin("https://A.example/x") == ("https", "a.example", 443)
    assert origin("http://127.0.0.1:8000/auth") == ("http", "127.0.0.1", 8000)
    assert origin("ftp://a.example/") is None
    assert origin("not a url") is None
