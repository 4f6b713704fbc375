from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, model_validator


def refuse_nul(value: Any) -> Any:
    """NUL (U+0000) is refused in every string, keys and nested values included: no text we
    keep may hold one (PostgreSQL cannot store it in text), and a client sending one means
    nothing by it. Found by the fuzz test (tests/e2e/test_fuzz.py)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("NUL characters are not allowed")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key)
            refuse_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_nul(item)
    return value


class Contract(BaseModel):
    """A message on the wire: unknown fields are refused, so typos fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields whose text is cleaned of control characters later, by their owner, rather than
    # refused (a guest's name); and a command's raw `data`, which its own model checks.
    nul_exempt: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        # After the fields' own validators: a field that cleans its text (chat) drops NULs
        # before this looks.
        for name, value in self.__dict__.items():
            if name not in self.nul_exempt:
                refuse_nul(value)
        return self
