"""OpenTelemetry across NATS (STYLE.md point 12).

`setup` installs a tracer provider that exports by OTLP/HTTP only when
OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise spans are made and dropped (silent). `inject`
puts W3C `traceparent` into NATS headers on request / publish; `extract` reads it in the
command router. Span names are subject templates, never room codes.
"""

import contextlib
import os
from contextlib import AbstractContextManager
from typing import Any

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


def recording() -> bool:
    """Whether spans go anywhere: a tracer provider is installed (`setup` with OTLP, or a
    test's). Without one every span is a no-op, which still costs a context manager and a
    context attach and detach per span (6 µs warm; on a command's path after an idle
    moment, several times that), so the hot paths skip them (`span`)."""
    return type(trace.get_tracer_provider()) is not trace.ProxyTracerProvider


NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


def group_span(name: str, contexts: list[Any]) -> AbstractContextManager[Any]:
    """A span over a group commit (when `recording()`): a child of the first command's trace
    context, linked to each other's, so every command's trace leads to it."""
    if not recording():
        return NO_SPAN
    links = [trace.Link(trace.get_current_span(c).get_span_context()) for c in contexts[1:]]
    return tracer.start_as_current_span(
        name,
        context=contexts[0],
        links=links,
        attributes={"sharetube.group_size": len(contexts)},
    )


def span(
    name: str, *, headers: dict[str, str] | None = None, **options: Any
) -> AbstractContextManager[Any]:
    """`tracer.start_as_current_span(name, **options)` when `recording()`, else nothing;
    `headers` (a NATS message's) give the parent context, read only when recording."""
    if not recording():
        return NO_SPAN
    if headers is not None:
        options["context"] = extract(headers)
    return tracer.start_as_current_span(name, **options)


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    carrier = dict(headers or {})
    if recording():
        propagate.inject(carrier)
    return carrier


def extract(headers: dict[str, str] | None):  # type: ignore[no-untyped-def]
    return propagate.extract(headers or {})
