from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """A message on the wire: unknown fields are refused, so typos fail loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)
