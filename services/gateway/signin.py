"""Google sign-in and sign-out on the gateway's HTTP face; auth does the OpenID Connect work.

- `GET /auth/google[?redirect_uri=&token=&login_hint=]` asks auth for the provider's URL and
  redirects there. A cookie holding the state binds the flow to this browser, so nobody can
  finish a sign-in someone else started (login CSRF). `token` is a guest's token: that user
  becomes the Google account.
- `GET /auth/google/callback` has auth exchange the code, then hands the token over: to
  `redirect_uri#token=...` (a portal page, or the extension's chromiumapp.org URL that
  `chrome.identity.launchWebAuthFlow` waits for), else to the window that opened the sign-in
  (`postMessage` to BACKEND_BASE_URL's origin) from a small page.
- `POST /auth/logout` revokes the token's session (services/common/sessions.py); auth tells
  every gateway, and each closes the sockets of that session (`start` below).
"""

import hmac
import html
import logging
import secrets
from typing import TYPE_CHECKING, Annotated, Any, Final
from urllib.parse import urlencode, urlsplit

import orjson
from fastapi import APIRouter, Cookie, Header, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from nats.aio.msg import Msg
from pydantic import ValidationError

from services.common import bus, sessions
from services.common.contracts import subjects
from services.common.contracts.envelope import (
    GoogleFinish,
    GoogleFinishReply,
    GoogleStart,
    GoogleStartReply,
    LogoutRequest,
    SignoutNotice,
)
from services.common.contracts.errors import CloseCode, ErrorCode, ServiceError

if TYPE_CHECKING:
    from .app import GatewayState

log = logging.getLogger(__name__)

STATE_COOKIE: Final = "st_oidc_state"
COOKIE_PATH: Final = "/auth/google"  # sent to /auth/google/callback, nowhere else
COOKIE_MAX_AGE_S: Final = 600  # as long as auth keeps the state (OIDC_STATE_TTL_S)
# auth makes up to three calls to the provider (discovery, token, keys) inside one request.
SIGNIN_TIMEOUT_S: Final = 15.0
# Nothing on these pages may be cached, framed, or leak the URL onwards.
_NO_STORE: Final = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter()


def _gw(request: Request) -> "GatewayState":
    return request.app.state.gw  # type: ignore[no-any-return]


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@router.get("/auth/google")
async def google(
    request: Request,
    redirect_uri: str | None = None,
    token: str | None = None,
    login_hint: str | None = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    gw = _gw(request)
    try:
        start = GoogleStart(
            redirect_uri=redirect_uri,
            upgrade_token=token or bearer(authorization),
            login_hint=login_hint,
        )
    except ValidationError as exc:
        raise ServiceError(ErrorCode.BAD_REQUEST, bus.validation_message(exc)) from exc
    reply = GoogleStartReply.model_validate(
        await bus.request(
            gw.nc, subjects.command("auth", "google_start"), start, timeout_s=SIGNIN_TIMEOUT_S
        )
    )
    response = RedirectResponse(reply.url, status_code=302, headers=_NO_STORE)
    response.set_cookie(
        STATE_COOKIE,
        reply.state,
        max_age=COOKIE_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        # Lax: sent on the provider's top-level redirect back to us, not on cross-site posts.
        samesite="lax",
        secure=gw.settings.backend_base_url.startswith("https://"),
    )
    return response


@router.get("/auth/google/callback")
async def google_callback(
    request: Request,
    state: str = "",
    code: str | None = None,
    error: str | None = None,
    st_oidc_state: Annotated[str | None, Cookie()] = None,
) -> Response:
    gw = _gw(request)
    if not state or not st_oidc_state or not hmac.compare_digest(state, st_oidc_state):
        failure = ServiceError(
            ErrorCode.UNAUTHORIZED,
            "This sign-in was not started in this browser, or it expired; start again.",
        )
        response = _page(gw, None, None, failure)
    else:
        try:
            finish = GoogleFinish(state=state, code=code, error=error)
            reply = GoogleFinishReply.model_validate(
                await bus.request(
                    gw.nc,
                    subjects.command("auth", "google_finish"),
                    finish,
                    timeout_s=SIGNIN_TIMEOUT_S,
                )
            )
        except ValidationError as exc:
            invalid = ServiceError(ErrorCode.BAD_REQUEST, bus.validation_message(exc))
            response = _page(gw, None, None, invalid)
        except ServiceError as exc:
            response = _page(gw, None, None, exc)
        else:
            response = _hand_over(gw, reply)
    response.delete_cookie(STATE_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response


@router.post("/auth/logout")
async def logout(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Response:
    gw = _gw(request)
    token = bearer(authorization)
    if token is None:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "Send Authorization: Bearer <token>.")
    await sessions.authenticate(gw.redis, gw.settings.jwt_secret, token)
    await bus.request(
        gw.nc, subjects.command("auth", "logout"), LogoutRequest(token=token), timeout_s=3.0
    )
    return Response(status_code=204)


def _hand_over(gw: "GatewayState", reply: GoogleFinishReply) -> Response:
    failure = ServiceError(reply.error, reply.message) if reply.error is not None else None
    if reply.redirect_uri is None:
        user = reply.user.model_dump() if reply.user is not None else None
        return _page(gw, reply.token, user, failure)
    # The token rides in the fragment: browsers never send it to a server, nor in a Referer.
    if failure is not None:
        fragment = urlencode({"error": failure.code.value, "error_description": failure.message})
    else:
        fragment = urlencode({"token": reply.token or ""})
    return RedirectResponse(f"{reply.redirect_uri}#{fragment}", status_code=303, headers=_NO_STORE)


_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ShareTube sign-in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; margin: 3rem auto; max-width: 32rem">
<p>{text}</p>
<script type="application/json" id="sharetube-auth">{payload}</script>
<script nonce="{nonce}">
(function () {{
  var result = JSON.parse(document.getElementById("sharetube-auth").textContent);
  if (window.opener) {{
    window.opener.postMessage(result, {origin});
    if (result.token) window.close();
  }}
}})();
</script></body></html>
"""


def _script_json(value: Any) -> str:
    """JSON that cannot end its <script> element or start markup inside it."""
    text = orjson.dumps(value).decode()
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _page(
    gw: "GatewayState",
    token: str | None,
    user: dict[str, Any] | None,
    failure: ServiceError | None,
) -> HTMLResponse:
    """The end of a sign-in without a redirect_uri: hand the result to the opener window."""
    if failure is not None:
        payload: dict[str, Any] = {"type": "sharetube:auth", "error": failure.to_dict()}
        text = f"Sign-in failed: {failure.message}"
        status = 503 if failure.code is ErrorCode.UNAVAILABLE else 400
    else:
        payload = {"type": "sharetube:auth", "token": token, "user": user}
        name = (user or {}).get("name") or "you"
        text = f"Signed in as {name}. You can close this window."
        status = 200
    nonce = secrets.token_urlsafe(16)
    body = _PAGE.format(
        text=html.escape(text),
        payload=_script_json(payload),
        nonce=nonce,
        origin=_script_json(_origin(gw.settings.backend_base_url)),
    )
    headers = {
        **_NO_STORE,
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'"
        ),
    }
    return HTMLResponse(body, status_code=status, headers=headers)


async def start(gw: "GatewayState") -> None:
    """Close this gateway's sockets of every session auth signs out."""

    async def on_signout(msg: Msg) -> None:
        try:
            sid = SignoutNotice.model_validate_json(msg.data).sid
        except ValueError:
            log.warning("bad notice on %s", msg.subject)
            return
        for conn in list(gw.sessions.get(sid, ())):
            conn.drop(CloseCode.UNAUTHORIZED, "signed out")

    await gw.nc.subscribe(subjects.gateway_notice("signout"), cb=on_signout)
