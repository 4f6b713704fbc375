"""The one place that declares every NATS subject, message schema and error code.

Services import this package and never each other (see DESIGN.md, STYLE.md point 1).
"""
