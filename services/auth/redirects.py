"""Where a finished sign-in may send its token: an allow-list of origins, nothing else.

An open redirect here would hand tokens to anyone, so a `redirect_uri` must be an absolute
http(s) URL on an allowed origin (scheme, host and port all equal), with no user info and no
fragment (the token travels in the fragment we add).
"""

from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def is_allowed(redirect_uri: str, allowed_origins: Iterable[str]) -> bool:
    if "#" in redirect_uri or any(
        ch.isspace() or not ch.isprintable() or ch == "\\" for ch in redirect_uri
    ):
        return False
    try:
        parts = urlsplit(redirect_uri)
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None:
        return False
    target = origin(redirect_uri)
    return target is not None and any(target == origin(o) for o in allowed_origins)
