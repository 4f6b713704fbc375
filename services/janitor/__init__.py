"""The janitor: one leader among its replicas runs the periodic jobs (presence timeouts,
idle rooms, retention), asking the owning services over NATS; it owns no tables."""
