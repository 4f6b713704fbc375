"""Settings shared by every service, read from the environment (pydantic-settings)."""

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# 32+ bytes, as RFC 7518 asks of an HS256 key; refused outside development.
DEV_SECRET = "dev-insecure-secret-change-me-0123456789"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    environment: str = Field(default="development", alias="SHARETUBE_ENV")
    nats_url: str = "nats://127.0.0.1:14222"
    # SQLite (`sqlite+aiosqlite:///path.db`) works for one replica per service.
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:15432/sharetube"
    redis_url: str = "redis://127.0.0.1:16379/0"
    jwt_secret: str = DEV_SECRET
    log_level: str = "INFO"
    # How long a service waits for another service's answer before giving up; nats-py's
    # default (0.5 s) is too tight for a command that runs a transaction under load.
    bus_timeout_s: float = 3.0
    # Commands a replica runs at once; the rest wait in NATS's buffer. Bounded so a burst
    # cannot exhaust the DB pool (pool_size below) and memory.
    max_inflight: int = 64
    # Database connections a process holds at most, kept once opened: with an overflow
    # above a smaller pool, every burst beyond it opened and closed connections (a new
    # PostgreSQL backend each time), which cost more than the commands themselves.
    db_pool_size: int = 20
    # /metrics, /healthz, /readyz (services/common/health.py); the chart uses 9100, the
    # Prometheus exporter convention. 0 picks a free port and logs it (several replicas on
    # one machine); the gateway serves them on its own PORT instead.
    metrics_port: int = 9100
    metrics_host: str = "0.0.0.0"

    @model_validator(mode="after")
    def _no_dev_secret_in_production(self) -> "CommonSettings":
        if self.environment == "production" and self.jwt_secret == DEV_SECRET:
            raise ValueError("JWT_SECRET must be set outside development")
        return self
