"""What a chat message may say: the ChatSend contract cleans and limits the text."""

import pytest
from pydantic import ValidationError

from services.common.contracts.commands import (
    MAX_CHAT_PAGE,
    MAX_CHAT_TEXT,
    ROUTES,
    SNAPSHOT_CHAT_MESSAGES,
    ChatDelete,
    ChatHistory,
    ChatSend,
    clean_chat_text,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("hello", "hello"),
        ("  padded \t", "padded"),
        ("a\x00b\x07c\x1bd\x7fe", "abcde"),  # C0 / C1 controls go
        ("line one\nline two", "line one\nline two"),  # newlines stay
        ("tab\there", "tabhere"),
        ("\r\nwindows\r\n", "windows"),
        ("evil\u202etxt.exe", "eviltxt.exe"),  # bidi override (Trojan Source)
        ("\u2066isolated\u2069", "isolated"),
        ("👨\u200d👩\u200d👧 family", "👨\u200d👩\u200d👧 family"),  # ZWJ keeps emoji whole
        ("Zoë 😀 日本語", "Zoë 😀 日本語"),
    ],
)
def test_cleaning(raw: str, clean: str) -> None:
    assert clean_chat_text(raw) == clean
    assert ChatSend(text=raw).text == clean


def test_lone_surrogates_never_get_through() -> None:
    # No JSON parser hands one over, and pydantic refuses one; the cleaner drops them anyway.
    assert clean_chat_text("lone \ud800 surrogate") == "lone  surrogate"
    with pytest.raises(ValidationError):
        ChatSend(text="lone \ud800 surrogate")


def test_the_limit_counts_characters_after_cleaning() -> None:
    assert ChatSend(text="😀" * MAX_CHAT_TEXT).text == "😀" * MAX_CHAT_TEXT
    assert len(ChatSend(text="\x00" * 500 + "x" * MAX_CHAT_TEXT).text) == MAX_CHAT_TEXT
    for bad in ("", " ", "\n\n", "\x00\x01", "\u202e", "x" * (MAX_CHAT_TEXT + 1)):
        with pytest.raises(ValidationError):
            ChatSend(text=bad)
    with pytest.raises(ValidationError):
        ChatSend(text="\x00" * (4 * MAX_CHAT_TEXT + 1))  # the raw text is bounded too


def test_history_pages() -> None:
    assert ChatHistory().limit == SNAPSHOT_CHAT_MESSAGES == 50
    assert ChatHistory(limit=MAX_CHAT_PAGE).limit == 100
    for bad in ({"limit": 0}, {"limit": MAX_CHAT_PAGE + 1}, {"before_id": ""}, {"x": 1}):
        with pytest.raises(ValidationError):
            ChatHistory.model_validate(bad)
    with pytest.raises(ValidationError):
        ChatDelete(message_id="")


def test_chat_commands_go_to_the_chat_service() -> None:
    assert {name: ROUTES[name].subject for name in ROUTES if name.startswith("chat.")} == {
        "chat.send": "st.chat.cmd.send",
        "chat.history": "st.chat.cmd.history",
        "chat.delete": "st.chat.cmd.delete",
    }
    assert ROUTES["chat.send"].data is ChatSend
