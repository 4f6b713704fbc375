import logging

from services.common.runtime import RedactSecrets


def _render(message: str, *args: object) -> str:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, message, args, None)
    RedactSecrets().filter(record)
    return record.getMessage()


def test_socket_urls_lose_their_token() -> None:
    line = _render('%s - "WebSocket /ws?token=%s" [accepted]', "127.0.0.1:5", "eyJ.abc-_.sig")
    assert "eyJ" not in line and "token=[redacted]" in line


def test_bearer_headers_lose_their_token() -> None:
    assert "secret" not in _render("Authorization: Bearer secret.jwt.value")


def test_other_lines_are_untouched() -> None:
    assert _render("room %s joined by %s", "AbC123", "ann") == "room AbC123 joined by ann"
