"""OpenTelemetry spans through the real server: switched on by OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (a fake
OTLP/HTTP collector on 127.0.0.1 that decodes what it receives), captured as well with the SDK's
InMemorySpanExporter for their attributes; the client's W3C traceparent continued."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from proxy.config import DiscoveryConfig, Paths, ServerConfig
from proxy.telemetry.config import TracingConfig
from proxy.telemetry.observer import build_telemetry
from tests.conftest import Proxy
from tests.fakes.openai_upstream import Action, FakeOpenAI
from tests.fakes.server import FakeServer
from tests.test_metrics import ask, local_models

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class FakeCollector(FakeServer):
    """An OTLP/HTTP trace collector: ``POST /v1/traces`` with a protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        super().__init__()
        self.exports: list[ExportTraceServiceRequest] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/traces", self._traces)

    async def _traces(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.exports.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def trace_ids(self) -> set[str]:
        return {
            s.trace_id.hex()
            for export in self.exports
            for rs in export.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        }


@pytest.fixture
def collector() -> Any:
    fake = FakeCollector().start()
    yield fake
    fake.stop()


@pytest.fixture
def traced(
    isolated_env: Path,
    fake_openai: FakeOpenAI,
    collector: FakeCollector,
    start_proxy: Callable[..., Proxy],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Proxy, InMemorySpanExporter]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url + "/v1/traces")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    local_models(isolated_env, fake_openai)
    proxy = start_proxy(config=ServerConfig(discovery=DiscoveryConfig(enabled=False)))
    telemetry = proxy.runtime.telemetry
    assert telemetry is not None and telemetry.tracing is not None and telemetry.metrics is None
    memory = InMemorySpanExporter()
    telemetry.tracing.provider.add_span_processor(SimpleSpanProcessor(memory))
    return proxy, memory


def spans_of(memory: InMemorySpanExporter, n: int) -> list[ReadableSpan]:
    """The spans once ``n`` are there (they are made when the request is over, after its last byte)."""
    deadline = time.monotonic() + 10
    while len(memory.get_finished_spans()) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(memory.get_finished_spans())


def split(spans: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    servers = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(servers) == 1
    return servers[0], [s for s in spans if s.kind == SpanKind.CLIENT]


def test_a_request_and_its_attempt_follow_the_genai_conventions_under_the_clients_trace(
    traced: tuple[Proxy, InMemorySpanExporter], collector: FakeCollector
) -> None:
    proxy, memory = traced
    client = proxy.client()
    out = ask(client, extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": "trace-me-1"})
    assert out.choices[0].message.content
    server, attempts = split(spans_of(memory, 2))

    assert server.name == "POST /v1/chat/completions"
    assert server.context is not None and server.parent is not None
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_ID
    attrs = dict(server.attributes or {})
    assert attrs["http.response.status_code"] == 200
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "local/m"
    assert attrs["gen_ai.response.model"] == "m"
    assert attrs["gen_ai.provider.name"] == "local"
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 9
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 0
    assert attrs["switchboard.request_id"] == "trace-me-1"
    assert "error.type" not in attrs
    assert server.status.status_code != StatusCode.ERROR

    (attempt,) = attempts
    assert attempt.name == "chat m"
    assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
    a = dict(attempt.attributes or {})
    assert a["gen_ai.request.model"] == "m"
    assert a["gen_ai.provider.name"] == "local"
    assert a["http.response.status_code"] == 200
    assert a["gen_ai.usage.output_tokens"] == 9
    # Times are the pipeline's: the attempt lies within the request.
    assert server.start_time is not None and server.end_time is not None
    assert attempt.start_time is not None and attempt.end_time is not None
    assert server.start_time <= attempt.start_time <= attempt.end_time <= server.end_time
    assert abs(server.start_time - time.time_ns()) < 60e9

    # The OTLP exporter got the same trace to the collector.
    deadline = time.monotonic() + 10
    while TRACE_ID not in collector.trace_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert TRACE_ID in collector.trace_ids()


def test_without_a_traceparent_a_new_trace_starts(traced: tuple[Proxy, InMemorySpanExporter]) -> None:
    proxy, memory = traced
    chunks = list(ask(proxy.client(), stream=True))
    assert chunks
    server, (attempt,) = split(spans_of(memory, 2))
    assert server.parent is None
    assert server.context is not None and format(server.context.trace_id, "032x") != TRACE_ID
    attrs = dict(server.attributes or {})
    assert attrs["switchboard.stream"] is True
    # The stream's usage chunk (asked for by Switchboard) gives the tokens.
    assert attrs["gen_ai.usage.output_tokens"] == 9
    assert dict(attempt.attributes or {})["gen_ai.usage.input_tokens"] == 12


def test_an_upstream_error_marks_both_spans(
    traced: tuple[Proxy, InMemorySpanExporter], fake_openai: FakeOpenAI
) -> None:
    proxy, memory = traced
    fake_openai.push(Action("error", status=503, body={"error": {"message": "busy", "type": "server_error"}}))
    with pytest.raises(openai.InternalServerError):
        ask(proxy.client())
    server, (attempt,) = split(spans_of(memory, 2))
    attrs = dict(server.attributes or {})
    assert attrs["http.response.status_code"] == 503
    assert attrs["error.type"]
    assert "gen_ai.response.model" not in attrs
    assert server.status.status_code == StatusCode.ERROR
    a = dict(attempt.attributes or {})
    assert a["http.response.status_code"] == 503
    assert a["error.type"]
    assert attempt.status.status_code == StatusCode.ERROR


def test_a_refused_request_has_a_server_span_only(traced: tuple[Proxy, InMemorySpanExporter]) -> None:
    proxy, memory = traced
    with pytest.raises(openai.NotFoundError):
        ask(proxy.client(), model="nowhere/at-all")
    server, attempts = split(spans_of(memory, 1))
    assert attempts == []
    attrs = dict(server.attributes or {})
    assert attrs["http.response.status_code"] == 404
    assert attrs["error.type"] == "model_not_found"
    assert "gen_ai.provider.name" not in attrs
    # A 4xx is the client's error, not the server's.
    assert server.status.status_code != StatusCode.ERROR


def test_tracing_stays_off_without_an_endpoint_and_says_so_without_the_sdk(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paths = Paths.from_env()
    assert build_telemetry(ServerConfig(), paths, env={}) is None
    assert build_telemetry(ServerConfig(), paths, env={"OTEL_EXPORTER_OTLP_ENDPOINT": ""}) is None
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"}
    assert build_telemetry(ServerConfig(), paths, env=disabled) is None
    off = ServerConfig(tracing=TracingConfig(enabled=False))
    assert build_telemetry(off, paths, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}) is None

    # The extra not installed: a clear line, and the server runs without traces.
    monkeypatch.delitem(sys.modules, "proxy.telemetry.tracing", raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with caplog.at_level(logging.WARNING, logger="switchboard"):
        assert build_telemetry(ServerConfig(), paths, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}) is None
    assert "pip install 'switchboard[otel]'" in caplog.text
