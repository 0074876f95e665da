"""OpenTelemetry traces (the optional extra ``switchboard[otel]``): one span per request, one per attempt.

Spans are made when the request is over (:meth:`Tracing.ended`), with the start and end times the
pipeline recorded, so nothing is paid while the request runs but the ``traceparent`` lookup:

* the request: a SERVER span ``POST /v1/chat/completions`` (HTTP semantic conventions, plus the GenAI
  attributes of the whole exchange), child of the client's W3C ``traceparent`` when it sent one;
* each upstream attempt: a CLIENT span ``chat gpt-4o`` under it, following the GenAI semantic
  conventions (``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.usage.*``, ``error.type``, ``http.response.status_code``).

The spans go to a :class:`TracerProvider` of this Runtime (not the process's global one): its exporter
is OTLP/HTTP, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables, batched by
``OTEL_BSP_*``, sampled by ``OTEL_TRACES_SAMPLER`` (by default: the client's sampling decision, else
every trace); ``OTEL_SERVICE_NAME`` names the service (default ``switchboard``).

With ``tracing.capture_content`` (off by default: prompts and answers are often confidential) the request
span also carries the conventions' opt-in content attributes, ``gen_ai.input.messages``,
``gen_ai.system_instructions`` and ``gen_ai.output.messages``, and ``gen_ai.response.finish_reasons``
(:mod:`proxy.telemetry.content`, read from the bytes the pipeline kept, here, when the request is over).

Not recorded: the model name the upstream answered with (``gen_ai.response.model`` is the model
Switchboard asked for), and without ``capture_content`` the finish reasons (reading them needs the answer
parsed, which the pipeline does not do otherwise) and any content.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .content import content_attributes
from .facts import Facts, key_id_of, operation_of

if TYPE_CHECKING:
    from ..asgi import Scope
    from ..outcome import Attempt, Outcome
    from ..router import Target

__all__ = ["Tracing"]

log = logging.getLogger("switchboard")

#: ``gen_ai.provider.name`` of the providers the conventions name; any other is its Switchboard id.
_PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "google-vertex": "gcp.vertex_ai",
    "amazon-bedrock": "aws.bedrock",
    "azure-openai-responses": "azure.ai.openai",
    "deepseek": "deepseek",
    "groq": "groq",
    "xai": "x_ai",
    "mistral": "mistral_ai",
}
_PROPAGATOR = TraceContextTextMapPropagator()
_EMPTY = Context()
Attributes = dict[str, str | int | float | bool | list[str]]


class Tracing:
    def __init__(self, exporter: SpanExporter | None = None, *, capture_content: bool = False) -> None:
        """``exporter``: where spans go (default: OTLP/HTTP as the environment configures it);
        ``capture_content``: record prompts and answers (the pipeline keeps their bytes for it)."""
        self.capture_content = capture_content
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "switchboard"}
        self.provider = TracerProvider(resource=Resource.create(attributes))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self.provider.get_tracer("switchboard")
        # perf_counter → epoch nanoseconds: one offset, taken once (both clocks run at the same rate).
        self._epoch_offset = time.time_ns() - time.perf_counter_ns()

    def close(self) -> None:
        """Export what is still queued (the server is stopping)."""
        self.provider.shutdown()

    def started(self, outcome: Outcome, scope: Scope) -> None:
        carrier: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"traceparent" or name == b"tracestate":
                carrier[name.decode()] = value.decode("latin-1")
        if carrier:
            outcome.trace = _PROPAGATOR.extract(carrier)

    def ended(self, outcome: Outcome, facts: Facts) -> None:
        parent = outcome.trace if isinstance(outcome.trace, Context) else _EMPTY
        end = outcome.ended or time.perf_counter()
        target = outcome.target
        operation = operation_of(outcome.surface)
        attrs: Attributes = {
            "http.request.method": "POST",
            "url.path": outcome.surface,
            "http.response.status_code": outcome.status,
            "gen_ai.operation.name": operation,
            "switchboard.request_id": outcome.request_id,
            "switchboard.attempts": len(outcome.attempts),
            "switchboard.stream": outcome.stream,
        }
        if outcome.requested is not None:
            attrs["gen_ai.request.model"] = outcome.requested[:256]
        if target is not None:
            attrs["gen_ai.provider.name"] = _provider_name(target)
            attrs["switchboard.target"] = target.public_id
            if outcome.status < 400:
                attrs["gen_ai.response.model"] = target.upstream_model
        key_id = key_id_of(outcome.caller)
        if key_id is not None:
            attrs["switchboard.key_id"] = key_id
        if outcome.status >= 400:
            attrs["error.type"] = outcome.error_type or str(outcome.status)
        if outcome.first_byte is not None and outcome.stream:
            attrs["switchboard.time_to_first_byte_s"] = outcome.first_byte - outcome.started
        if facts.usage is not None:
            _usage(attrs, facts)
        if outcome.capture is not None:
            attrs.update(content_attributes(outcome.surface, outcome.stream, outcome.capture))
        span = self._tracer.start_span(
            f"POST {outcome.surface}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attrs,
            start_time=self._ns(outcome.started),
        )
        if outcome.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        inside = trace.set_span_in_context(span, parent)
        last = len(outcome.attempts) - 1
        for i, attempt in enumerate(outcome.attempts):
            self._attempt(attempt, operation, inside, end, facts if i == last else None)
        span.end(end_time=self._ns(end))

    def _attempt(self, attempt: Attempt, operation: str, parent: Context, end: float, facts: Facts | None) -> None:
        target = attempt.target
        attrs: Attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": _provider_name(target),
            "gen_ai.request.model": target.upstream_model,
            "switchboard.target": target.public_id,
        }
        if attempt.status:
            attrs["http.response.status_code"] = attempt.status
        failed = attempt.error_type is not None or attempt.status == 0 or attempt.status >= 400
        if failed:
            attrs["error.type"] = attempt.error_type or (str(attempt.status) if attempt.status else "no_answer")
        else:
            attrs["gen_ai.response.model"] = target.upstream_model
            if facts is not None and facts.usage is not None:
                _usage(attrs, facts)
        if attempt.retry_after is not None:
            attrs["switchboard.retry_after_s"] = attempt.retry_after
        span = self._tracer.start_span(
            f"{operation} {target.upstream_model}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=self._ns(attempt.started),
        )
        if failed:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=self._ns(attempt.ended or end))

    def _ns(self, perf: float) -> int:
        return int(perf * 1e9) + self._epoch_offset


def _provider_name(target: Target) -> str:
    return _PROVIDER_NAMES.get(target.provider.id, target.provider.id)


def _usage(attrs: Attributes, facts: Facts) -> None:
    usage = facts.usage
    assert usage is not None
    attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
    attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
    attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
    attrs["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    attrs["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    attrs["switchboard.cost_usd"] = facts.cost
