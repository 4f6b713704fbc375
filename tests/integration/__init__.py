"""Services' parts against a real PostgreSQL and Redis, in-process (no NATS round trips)."""
