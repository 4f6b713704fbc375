"""JWTs: what auth issues the gateway accepts; anything else is `unauthorized`."""

import base64
import time

import jwt
import pytest

from services.common import tokens
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef

SECRET = "test-secret-0123456789abcdef0123456789"
OTHER_SECRET = "another-secret-0123456789abcdef012345"
USER = UserRef(id="5f0c2a9e-6d7b-4c1e-9a53-0b8d2f1e7c44", name="Ann", admin=False)


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": tokens.ISSUER,
        "sub": USER.id,
        "name": USER.name,
        "adm": False,
        "sid": "s1",
        "iat": now,
        "exp": now + 60,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def assert_unauthorized(token: str, secret: str = SECRET) -> None:
    with pytest.raises(ServiceError) as info:
        tokens.verify(secret, token)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    assert info.value.message == "Invalid or expired token."


def test_round_trip() -> None:
    token = tokens.issue(SECRET, USER, expires_s=3600)
    user, got = tokens.verify(SECRET, token)
    assert user == USER
    assert got["iss"] == "sharetube"
    assert got["sub"] == USER.id
    assert got["exp"] - got["iat"] == 3600
    assert abs(got["iat"] - time.time()) < 5
    assert len(got["sid"]) == 32  # a fresh session id when none is given


def test_round_trip_keeps_admin_session_and_unicode_name() -> None:
    admin = UserRef(id="u-2", name="Zoë 😀", admin=True)
    user, got = tokens.verify(SECRET, tokens.issue(SECRET, admin, 60, session_id="sess-1"))
    assert user == admin
    assert got["sid"] == "sess-1"


def test_each_token_gets_its_own_session() -> None:
    a = tokens.verify(SECRET, tokens.issue(SECRET, USER, 60))[1]["sid"]
    b = tokens.verify(SECRET, tokens.issue(SECRET, USER, 60))[1]["sid"]
    assert a != b


def test_the_token_is_hs256() -> None:
    assert jwt.get_unverified_header(tokens.issue(SECRET, USER, 60))["alg"] == "HS256"


def test_expired() -> None:
    assert_unauthorized(tokens.issue(SECRET, USER, expires_s=-1))


def test_expired_long_ago() -> None:
    assert_unauthorized(jwt.encode(claims(iat=1, exp=2), SECRET, algorithm="HS256"))


def test_other_secret() -> None:
    assert_unauthorized(tokens.issue(OTHER_SECRET, USER, 60))


def _flip(segment: str, index: int) -> str:
    chars = list(segment)
    chars[index] = "A" if chars[index] != "A" else "B"
    return "".join(chars)


def test_tampered_signature() -> None:
    header, payload, signature = tokens.issue(SECRET, USER, 60).split(".")
    # A middle character: the last one may only carry padding bits.
    assert_unauthorized(".".join([header, payload, _flip(signature, len(signature) // 2)]))


def test_tampered_payload() -> None:
    header, _payload, signature = tokens.issue(SECRET, USER, 60).split(".")
    forged = jwt.encode(claims(adm=True), OTHER_SECRET, algorithm="HS256").split(".")[1]
    assert_unauthorized(".".join([header, forged, signature]))


def test_missing_signature() -> None:
    header, payload, _signature = tokens.issue(SECRET, USER, 60).split(".")
    assert_unauthorized(f"{header}.{payload}.")


def test_alg_none() -> None:
    assert_unauthorized(jwt.encode(claims(), None, algorithm="none"))


def test_another_hmac_algorithm() -> None:
    assert_unauthorized(jwt.encode(claims(), SECRET + SECRET, algorithm="HS512"), SECRET + SECRET)


@pytest.mark.parametrize("issuer", ["evil", "sharetube-dev", ""])
def test_wrong_issuer(issuer: str) -> None:
    assert_unauthorized(jwt.encode(claims(iss=issuer), SECRET, algorithm="HS256"))


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "iss"])
def test_required_claims(missing: str) -> None:
    token_claims = claims()
    del token_claims[missing]
    assert_unauthorized(jwt.encode(token_claims, SECRET, algorithm="HS256"))


def test_not_yet_issued() -> None:
    assert_unauthorized(jwt.encode(claims(iat=int(time.time()) + 3600), SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "a.b.c", "a.b", base64.urlsafe_b64encode(b"{}").decode(), "😀.😀.😀"],
)
def test_garbage(token: str) -> None:
    assert_unauthorized(token)


def test_a_minimal_foreign_but_valid_token_names_its_user() -> None:
    # Tokens without name / adm (older issuers) still verify; admin is never assumed.
    token_claims = claims()
    del token_claims["name"], token_claims["adm"], token_claims["sid"]
    user, _ = tokens.verify(SECRET, jwt.encode(token_claims, SECRET, algorithm="HS256"))
    assert user == UserRef(id=USER.id, name="", admin=False)
