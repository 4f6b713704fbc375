"""Connection ids name their gateway; NUL never gets into a contract."""

import pytest
from pydantic import ValidationError

from services.common import presence
from services.common.contracts.commands import ChatHistory, ChatSend, RoomCreate
from services.common.contracts.envelope import CommandEnvelope, GuestRequest
from services.common.contracts.models import UserRef


@pytest.mark.parametrize("gateway", ["gw-1", "host-a1b2c3", "odd:id", "x"])
def test_a_connection_id_names_its_gateway(gateway: str) -> None:
    assert presence.gateway_of(presence.conn_id(gateway, 42)) == gateway


def test_nul_is_refused_in_every_string_nested_or_not() -> None:
    user = UserRef(id="u", name="n")
    with pytest.raises(ValidationError):
        CommandEnvelope(id="a\x00", user=user)
    with pytest.raises(ValidationError):
        CommandEnvelope(id="a", user=user, room="AbC\x00")
    with pytest.raises(ValidationError):
        RoomCreate(name="party\x00")
    with pytest.raises(ValidationError):
        ChatHistory(before_id="m\x00")
    with pytest.raises(ValidationError):
        UserRef(id="u", name="\x00")
    CommandEnvelope(id="a", user=user, data={"ok": ["fine", 1, None]})


def test_chat_text_drops_nul_with_the_other_control_characters() -> None:
    assert ChatSend(text="a\x00b").text == "ab"


def test_text_its_owner_cleans_is_left_to_it() -> None:
    """A command's raw data is checked by its own model; a guest's name is cleaned by auth."""
    user = UserRef(id="u", name="n")
    envelope = CommandEnvelope(id="a", user=user, data={"text": "a\x00b"})
    assert ChatSend.model_validate(envelope.data).text == "ab"
    assert GuestRequest(name="Ann\x00").name == "Ann\x00"
