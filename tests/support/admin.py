"""Site admins for tests: a token with the `adm` claim, signed with the test system's secret
(auth has no admin sign-up; production admins come from configuration)."""

import uuid
from typing import Any

from services.common import tokens
from services.common.contracts.models import UserRef
from tests.conftest import TEST_ENV
from tests.support.client import WsClient


def admin_token(name: str = "admin") -> tuple[str, dict[str, Any]]:
    user = UserRef(id=uuid.uuid4().hex, name=name, admin=True)
    return tokens.issue(TEST_ENV["JWT_SECRET"], user, 3600), user.model_dump()


async def connect_admin(ws_url: str, name: str = "admin") -> WsClient:
    token, user = admin_token(name)
    client = await WsClient.connect(ws_url, token, name)
    client.user = user  # type: ignore[attr-defined]
    return client
