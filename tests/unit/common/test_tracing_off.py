"""Without a tracer provider every span is a no-op: the hot paths then make none at all
(tracing.span), and put no `traceparent` on the wire; with one, they trace as before."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import tracing


def test_no_provider_no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())
    assert not tracing.recording()
    assert tracing.span("st.svc.rooms.cmd.seek", headers={}) is tracing.NO_SPAN
    with tracing.span("st.svc.rooms.cmd.seek", headers={}) as span:
        assert span is None
        assert tracing.inject() == {}


def test_a_provider_gets_the_spans_and_their_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("test"))
    assert tracing.recording()
    with tracing.span("ws seek", kind=trace.SpanKind.SERVER):
        headers = tracing.inject()
    assert "traceparent" in headers
    with tracing.span("st.svc.rooms.cmd.seek", headers=headers, kind=trace.SpanKind.SERVER):
        pass
    client, server = exporter.get_finished_spans()
    assert server.parent is not None
    assert server.parent.span_id == client.context.span_id
    assert server.context.trace_id == client.context.trace_id
