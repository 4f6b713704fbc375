from services.common.settings import CommonSettings


class ChatSettings(CommonSettings):
    # Per user, across rooms: 5 messages in any 5 s is a fast typist, not a flood; the
    # seed's chat allowed about the same.
    chat_rate_limit_messages: int = 5
    chat_rate_limit_window_s: float = 5.0
