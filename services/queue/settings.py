from services.common.settings import CommonSettings


class QueueSettings(CommonSettings):
    # Long enough for a party's evening, short enough that a queue event (the whole list)
    # stays a few tens of KB.
    max_queue_length: int = 200
