"""``POST /v1/responses``: the OpenAI Responses surface (what Codex CLI speaks) on :mod:`proxy.pipeline`.

Stateless only: the whole conversation travels in ``input`` every turn (``store: false``); what needs a
response store (``previous_response_id``, ``store: true``, ``GET /v1/responses/{id}``) is a clear 400/404.

Its native API is ``openai-responses`` (OpenAI, Azure): such a Target takes the passthrough branch
(:class:`_PassthroughLeg`: the client's body with only the model replaced, the answer relayed as bytes).
Every other API goes through the canonical model (:mod:`.surfaces.responses_in` in,
:mod:`.surfaces.responses_out` out), the Codex subscription's ``openai-codex-responses`` included.
Errors before the first byte are OpenAI's envelope; a stream that fails ends with ``response.failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from providers.canonical import Response, Usage
from providers.credentials import ResolvedAuth
from providers.errors import NotFound, SwitchboardError, UpstreamUnreachable
from providers.request_facts import facts_from_body
from providers.sse import EventSplitter
from providers.wire.base import UpstreamCall, WireAPI
from providers.wire.openai_completions import upstream_error
from providers.wire.openai_responses import responses_url
from providers.wire.openai_responses_stream import usage_from

from .asgi import Receive, Scope, Send
from .metering import estimate_input_tokens, estimate_output_tokens
from .pipeline import Leg, Pipeline
from .router import Target
from .routing.table import take_fallbacks
from .runtime import Runtime
from .surfaces.responses_in import SEAL_PREFIX, Shape, to_canonical
from .surfaces.responses_out import encode_response, failure_code, new_id, response_object
from .surfaces.responses_stream import ResponsesStreamEncoder
from .surfaces.responses_types import decode_body, validate
from .translated import StreamEncoder, TranslatedLeg
from .upstream_call import wire_target

__all__ = ["OpenAIResponses", "handle_responses", "response_not_stored"]

log = logging.getLogger("switchboard")

_JSON = b"application/json"
_TERMINAL = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"', b'"type":"error"')


class OpenAIResponses:
    """The OpenAI Responses surface (see :class:`proxy.pipeline.Surface`)."""

    path = "/v1/responses"
    native_api = "openai-responses"

    def decode(self, body: bytearray) -> dict[str, Any]:
        return decode_body(body)

    def model(self, req: dict[str, Any]) -> str:
        model: str = req["model"]
        return model

    def fallbacks(self, req: dict[str, Any]) -> tuple[str, ...]:
        return take_fallbacks(req)

    def max_output(self, req: dict[str, Any]) -> int | None:
        limit = req.get("max_output_tokens")
        return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None

    def passthrough(
        self, req: dict[str, Any], target: Target, auth: ResolvedAuth, release: bool, *, meter: bool = False
    ) -> Leg:
        body = req if release else dict(req)
        adapted = target.provider.adapter
        # A cloud adapter may name another upstream model (Azure's deployment) through the credential.
        body["model"] = wire_target(target, auth).model_id if adapted else target.upstream_model
        _drop_sealed_reasoning(body)
        payload = msgspec.json.encode(body)
        facts = facts_from_body(payload, "openai-responses") if adapted else None
        stream = body.get("stream") is True
        if release:
            req.clear()
        return _PassthroughLeg(target.provider.name, payload, stream, facts, meter=meter)

    def translate(self, req: dict[str, Any], target: Target, wire: WireAPI, release: bool) -> Leg:
        creq, shape = to_canonical(validate(req), req, target.upstream_model)
        if release:
            req.clear()

        def respond(answer: Response, model: str) -> bytes:
            return msgspec.json.encode(encode_response(answer, model, shape))

        def encoder_for(model: str, include_usage: bool) -> StreamEncoder:
            return ResponsesStreamEncoder(model, shape)

        return TranslatedLeg(wire, target, creq, respond, encoder_for)

    def error_body(self, exc: SwitchboardError) -> bytes:
        envelope = exc.envelope()
        if exc.status in (400, 413, 429) and exc.code is None:
            # Codex reads the code: context_length_exceeded starts a compaction, quota errors stop retries.
            code = failure_code(exc)
            envelope["error"]["code"] = code if code != "server_error" else None
        return msgspec.json.encode(envelope)


def _drop_sealed_reasoning(body: dict[str, Any]) -> None:
    """Reasoning another provider produced (sealed by Switchboard) cannot be verified by OpenAI: left out."""
    items = body.get("input")
    if not isinstance(items, list):
        return
    kept = [
        it
        for it in items
        if not (
            isinstance(it, dict)
            and it.get("type") == "reasoning"
            and isinstance(it.get("encrypted_content"), str)
            and it["encrypted_content"].startswith(SEAL_PREFIX)
        )
    ]
    if len(kept) != len(items):
        body["input"] = kept


_PIPELINE = Pipeline(OpenAIResponses())


async def handle_responses(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await _PIPELINE.handle(rt, scope, receive, send)


def response_not_stored() -> NotFound:
    """The 404 for ``GET /v1/responses/{id}`` (for a route that raises rather than calls the handler)."""
    return NotFound(
        "Switchboard does not store responses, so none can be retrieved by id; send the whole "
        "conversation in 'input' with \"store\": false and read the answer from the POST /v1/responses reply",
        code="response_not_found",
    )


class _AnswerUsage(msgspec.Struct):
    usage: dict[str, Any] | None = None


class _PassthroughLeg:
    """OpenAI Responses to a Responses upstream: bytes out as they came, only their framing checked.

    Metered (``meter``), it reads the usage of the answer's ``usage`` or of the stream's
    ``response.completed`` (or ``response.incomplete``) event, the one event decoded; without it (a cut
    stream) :meth:`usage` estimates and sets :attr:`estimated`. A stream that ends without its terminal
    event gets a ``response.failed`` event, never a silent close.
    """

    __slots__ = ("_meter", "_name", "_payload", "_relayed", "_started", "_usage", "estimated", "facts", "stream")

    def __init__(self, name: str, payload: bytes, stream: bool, facts: Any, *, meter: bool = False) -> None:
        self._name = name
        self._payload = payload
        self.stream = stream
        self.facts = facts
        self._meter = meter
        self._started = False
        self._usage: Usage | None = None
        self._relayed: tuple[int, bytes] = (0, b"")
        self.estimated = False

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        return UpstreamCall(responses_url(auth.base_url), self._payload)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return upstream_error(self._name, status, body, headers)

    def answer(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            answer = msgspec.json.decode(body, type=_AnswerUsage)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamUnreachable(
                f"{self._name} answered {status} with a body that is not a Response object ({exc}); "
                "the answer was cut short or the baseUrl points at something else: retry, or check the baseUrl"
            ) from exc
        if self._meter:
            self._started = True
            self._usage = usage_from(answer.usage)
            if self._usage is None:
                self._relayed = (len(body), b"")
        ctype = headers.get("content-type")
        return status, body, [(b"content-type", ctype.encode() if ctype else _JSON)]

    def usage(self) -> Usage | None:
        if not self._started:
            return None
        if self._usage is not None:
            self.estimated = False
            return self._usage
        self.estimated = True
        relayed, sample = self._relayed
        output = estimate_output_tokens(relayed, sample) if self.stream else relayed // 4
        return Usage(input_tokens=estimate_input_tokens(len(self._payload)), output_tokens=output)

    def stream_steps(
        self,
    ) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        name, meter = self._name, self._meter
        splitter = EventSplitter()
        self._started = meter
        last = b""
        relayed = events = 0

        def step(chunk: bytes) -> bytes:
            nonlocal last, relayed, events
            out = splitter.feed(chunk)
            if out:
                last = out
                events += out.count(b"\n\n")  # for the sequence number of our own last event
                if meter:
                    relayed += len(out)
                    if b'"response.completed"' in out or b'"response.incomplete"' in out:
                        self._take_usage(out)
            return out

        def finish() -> bytes:
            rest = splitter.flush()
            if meter:
                self._relayed = (relayed, last)
            if rest.strip():
                if meter:
                    self._take_usage(rest)
                tail = rest if rest.endswith(b"\n\n") else rest.rstrip(b"\r\n") + b"\n\n"
                if _ends_terminal(tail):
                    return tail
                return tail + fail(UpstreamUnreachable(f"{name}: stream ended early inside an event; retry"))
            if _ends_terminal(last):
                return b""
            log.warning("%s's Responses stream ended without response.completed", name)
            return fail(
                UpstreamUnreachable(f"{name}: stream ended early (the answer is incomplete); retry the request")
            )

        def fail(exc: Exception) -> bytes:
            err = exc if isinstance(exc, SwitchboardError) else UpstreamUnreachable(f"{name}: {type(exc).__name__}")
            body = response_object(new_id("resp"), "", Shape(), [], None, None)
            body["status"] = "failed"
            body["error"] = {"code": failure_code(err), "message": err.message}
            payload = msgspec.json.encode({"type": "response.failed", "sequence_number": events, "response": body})
            return b"event: response.failed\ndata: " + payload + b"\n\n"

        return step, finish, fail

    def _take_usage(self, events: bytes) -> None:
        for event in events.split(b"\n\n"):
            if b'"response.completed"' not in event and b'"response.incomplete"' not in event:
                continue
            data = b"".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
            try:
                payload = msgspec.json.decode(data)
            except msgspec.DecodeError:
                continue
            response = payload.get("response") if isinstance(payload, dict) else None
            if isinstance(response, dict) and (usage := usage_from(response.get("usage"))) is not None:
                self._usage = usage


def _ends_terminal(last: bytes) -> bool:
    """Whether the last event forwarded is the stream's terminal one (not merely mentioned in text)."""
    events = [e for e in last.split(b"\n\n") if e.strip()]
    if not events:
        return False
    final = events[-1]
    return any(marker in final for marker in _TERMINAL)
