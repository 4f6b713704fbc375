"""gateway: clients' WebSockets and the REST face, relayed to the services over NATS."""
