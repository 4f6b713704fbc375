"""OpenTelemetry across NATS (STYLE.md point 12).

`setup` installs a tracer provider that exports by OTLP/HTTP only when
OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise spans are made and dropped (silent). `inject`
puts W3C `traceparent` into NATS headers on request / publish; `extract` reads it in the
command router. Span names are subject templates, never room codes.
"""

import os

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

tracer = trace.get_tracer("sharetube")

_configured = False


def setup(service: str) -> None:
    """Once per process; a provider set earlier (a test's in-memory one) is kept."""
    global _configured
    if _configured or not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME") or f"sharetube-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract(headers: dict[str, str] | None):  # type: ignore[no-untyped-def]
    return propagate.extract(headers or {})
