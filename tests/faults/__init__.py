"""Fault tests: the real processes on their own NATS, PostgreSQL and Redis, killed and restarted."""
