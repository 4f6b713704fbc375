"""Which pages may open a socket: the `Origin` check on `/ws`.

Browsers send `Origin` with every WebSocket handshake and let any page connect anywhere; the
token in the URL is what protects a user, but a page that got hold of one (or a user tricked
into pasting one) should still not drive the socket from a foreign site. Clients that send no
Origin are not browsers (tools, tests, native apps) and are allowed: the check is about pages.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

EXTENSION_SCHEME = "chrome-extension://"


def origin_of(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    exact: frozenset[str]
    any_origin: bool = False
    any_extension: bool = True

    @classmethod
    def build(cls, allowed: str, backend_base_url: str, cors_origins: str) -> "OriginPolicy":
        listed = [o.strip() for o in allowed.split(",") if o.strip()]
        cors = [o.strip() for o in cors_origins.split(",") if o.strip() and o.strip() != "*"]
        exact = {origin_of(o) or o.lower() for o in [*listed, *cors, backend_base_url]}
        named_extensions = any(o.lower().startswith(EXTENSION_SCHEME) for o in listed)
        return cls(
            exact=frozenset(o for o in exact if o and o != "*"),
            any_origin="*" in listed,
            # Naming extension ids pins them; otherwise any extension may connect (it still
            # needs a user's token, which only ours obtains).
            any_extension=not named_extensions,
        )

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not a browser
        origin = origin.strip().lower()
        if self.any_origin or origin in self.exact:
            return True
        if origin.startswith(EXTENSION_SCHEME):
            return self.any_extension
        # The gateway's own pages (portals) under whatever host name it was reached by.
        return bool(host) and origin in (f"http://{host.lower()}", f"https://{host.lower()}")
