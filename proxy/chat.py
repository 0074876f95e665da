"""``POST /v1/chat/completions``: the OpenAI chat surface (its decode and encode) on :mod:`proxy.pipeline`.

Its native API is ``openai-completions``: a Target speaking it takes the passthrough branch
(:class:`_PassthroughLeg`: the body with only the needed edits, the answer relayed as bytes); any other
API goes through the canonical model (:func:`decode_request` in, :class:`ChunkEncoder` and
:func:`encode_response` out). A 200 whose body is not JSON is a 502, not a success.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from providers.canonical import Request, Response, Usage
from providers.credentials import ResolvedAuth
from providers.errors import SwitchboardError, UpstreamUnreachable
from providers.request_facts import RequestFacts, facts_from_chat
from providers.sse import EventSplitter, encode_event
from providers.wire import openai_completions
from providers.wire.base import UpstreamCall, WireAPI
from providers.wire.openai_completions import chat_usage

from .asgi import Receive, Scope, Send
from .metering import (
    decode_answer,
    estimate_answer_output,
    estimate_input_tokens,
    estimate_output_tokens,
    has_usage,
    last_usage,
    request_usage,
    take_usage,
    worst_case_output,
)
from .pipeline import Leg, Pipeline
from .router import Target
from .routing.table import take_fallbacks
from .runtime import Runtime
from .streaming import DONE
from .surfaces.openai_chat_in import decode_request
from .surfaces.openai_chat_out import ChunkEncoder, encode_response
from .surfaces.openai_chat_types import decode_body
from .translated import StreamEncoder, TranslatedLeg
from .upstream_call import wire_target

__all__ = ["OpenAIChat", "handle_chat_completions"]

log = logging.getLogger("switchboard")

_JSON = b"application/json"


def _nothing_relayed() -> tuple[int, bytes]:
    return 0, b""


class OpenAIChat:
    """The OpenAI chat completions surface (see :class:`proxy.pipeline.Surface`)."""

    path = "/v1/chat/completions"
    native_api = "openai-completions"

    def decode(self, body: bytearray) -> dict[str, Any]:
        # Bounded nesting, valid UTF-8, a sane 'model' and 'messages'; the translated path types the rest.
        return decode_body(body)

    def model(self, req: dict[str, Any]) -> str:
        model: str = req["model"]
        return model

    def fallbacks(self, req: dict[str, Any]) -> tuple[str, ...]:
        return take_fallbacks(req)

    def max_output(self, req: dict[str, Any]) -> int | None:
        return worst_case_output(req)

    def passthrough(
        self, req: dict[str, Any], target: Target, auth: ResolvedAuth, release: bool, *, meter: bool = False
    ) -> Leg:
        # A fallback Target may need the request again: edit a copy unless this is the last one.
        body = req if release else dict(req)
        adapted = target.provider.adapter
        # A cloud adapter may name another upstream model (Azure's deployment) through the credential.
        model = wire_target(target, auth).model_id if adapted else target.upstream_model
        openai_completions.adapt_request(body, model, target.compat, target.model)
        stream = body.get("stream") is True
        # Metered, a stream asks for its usage chunk; one the client did not ask for is not relayed to it.
        strip = meter and stream and bool(target.compat.supports_usage_in_streaming) and request_usage(body)
        payload = msgspec.json.encode(body)
        # For a cloud adapter, read once here from the decoded body (adapters never decode bodies).
        facts = facts_from_chat(body) if adapted else None
        if release:
            req.clear()  # as large as the body: free it before the upstream call, not after the answer
        return _PassthroughLeg(target.provider.name, payload, stream, facts, meter=meter, strip=strip)

    def canonical(self, req: dict[str, Any], target: Target, release: bool) -> Request:
        creq = decode_request(req, target.upstream_model, target.provider.name)
        if release:
            req.clear()
        return creq

    def translate(self, req: dict[str, Any], target: Target, wire: WireAPI, release: bool) -> Leg:
        return TranslatedLeg(
            wire, target, self.canonical(req, target, release), self.encode_response, self.stream_encoder
        )

    def error_body(self, exc: SwitchboardError) -> bytes:
        return msgspec.json.encode(exc.envelope())

    def encode_response(self, answer: Response, model: str) -> bytes:
        return msgspec.json.encode(encode_response(answer, model))

    def stream_encoder(self, model: str, include_usage: bool) -> StreamEncoder:
        return ChunkEncoder(model, include_usage)


_PIPELINE = Pipeline(OpenAIChat())


async def handle_chat_completions(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await _PIPELINE.handle(rt, scope, receive, send)


class _PassthroughLeg:
    """OpenAI chat to an OpenAI-compatible upstream: bytes out as they came, only their framing checked.

    Metered (``meter``), it also reads the exchange's usage (:mod:`proxy.metering`): the answer's
    ``usage`` object, or in a stream the one event that carries usage, found by a substring search;
    with ``strip``, the usage-only chunk it asked for on the client's behalf is not relayed. When no
    usage arrived (a cut stream, a provider that sends none), :meth:`usage` estimates it and sets
    :attr:`estimated`. Unmetered, the byte path does nothing more than frame events.
    """

    __slots__ = (
        "_answer_output",
        "_meter",
        "_name",
        "_payload",
        "_started",
        "_strip",
        "_tally",
        "_usage",
        "estimated",
        "facts",
        "stream",
    )

    def __init__(
        self,
        name: str,
        payload: bytes,
        stream: bool,
        facts: RequestFacts | None,
        *,
        meter: bool = False,
        strip: bool = False,
    ) -> None:
        self._name = name
        self._payload = payload
        self.stream = stream
        self.facts = facts
        self._meter = meter
        self._strip = strip
        #: The answer (or the stream) began: from here on the exchange has a cost.
        self._started = False
        self._usage: Usage | None = None
        self.estimated = False
        #: The stream's forwarded bytes and last events forwarded so far, for an estimate.
        self._tally: Callable[[], tuple[int, bytes]] = _nothing_relayed
        self._answer_output = 0

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        return UpstreamCall(openai_completions.chat_url(auth.base_url), self._payload)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return openai_completions.upstream_error(self._name, status, body, headers)

    def answer(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            raw_usage = decode_answer(body)  # checks the body is a JSON object, skips all but 'usage'
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("%s answered %s with a body that is not a JSON object: %s", self._name, status, exc)
            raise UpstreamUnreachable(
                f"{self._name} answered {status} with a body that is not a JSON object ({exc}); "
                "the answer was cut short or the baseUrl points at something else: retry, or check the baseUrl"
            ) from exc
        if self._meter:
            self._started = True
            self._usage = chat_usage(raw_usage) if raw_usage is not None else None
            if self._usage is None:
                self._answer_output = estimate_answer_output(body)
        ctype = headers.get("content-type")
        return status, body, [(b"content-type", ctype.encode() if ctype else _JSON)]

    def usage(self) -> Usage | None:
        """The upstream's usage, else (a cut stream, none sent) an estimate with :attr:`estimated` set;
        None when not metered or nothing was answered (an upstream error costs nothing)."""
        if not self._started:
            return None
        if self._usage is not None:
            self.estimated = False
            return self._usage
        self.estimated = True
        output = estimate_output_tokens(*self._tally()) if self.stream else self._answer_output
        return Usage(input_tokens=estimate_input_tokens(len(self._payload)), output_tokens=output)

    def stream_steps(
        self,
    ) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        """Complete events forwarded as they are, never parsed (metered: see the class).

        Whether the provider finished is read off the tail of the last bytes forwarded (``[DONE]``), so
        the per-chunk cost stays one boundary check (metered: plus one substring search and a byte count).
        """
        name = self._name
        splitter = EventSplitter()
        last = b""

        def step(chunk: bytes) -> bytes:
            nonlocal last
            out = splitter.feed(chunk)
            if out:
                last = out
            return out

        def conclude(rest: bytes, last: bytes) -> bytes:
            if rest.endswith(b"[DONE]") and rest.startswith(b"data:"):
                return DONE  # the last event lacked its blank line; nothing else was held back
            if not rest and last[-16:].rstrip(b"\r\n").endswith(b"[DONE]"):
                return b""
            cut = " inside an event" if rest else " without data: [DONE]"
            log.warning("%s's stream ended early%s", name, cut)
            return fail(
                UpstreamUnreachable(f"{name}: stream ended early{cut} (the answer is incomplete); retry the request")
            )

        def finish() -> bytes:
            return conclude(splitter.flush().strip(), last)

        def fail(exc: Exception) -> bytes:
            err = exc if isinstance(exc, SwitchboardError) else UpstreamUnreachable(f"{name}: {type(exc).__name__}")
            return encode_event(msgspec.json.encode(err.envelope())) + DONE

        if not self._meter:
            return step, finish, fail
        self._started = True
        strip = self._strip

        relayed = 0  # closure cells, not attributes: the cheapest state per chunk

        def metered_step(chunk: bytes) -> bytes:
            nonlocal last, relayed
            out = splitter.feed(chunk)
            if out:
                # One substring search per chunk, from the end (where a stream's usage is); only an event
                # holding usage is decoded. Stripping the usage chunk the client did not ask for needs
                # every usage event of the chunk: the forward search, once per stream.
                at = out.rfind(b'"usage"')
                if at >= 0:
                    if strip:
                        out, usage = take_usage(out, True)
                    else:
                        usage = last_usage(out, at)
                    if usage is not None:
                        self._usage = usage
                    if not out:
                        return out
                last = out
                relayed += len(out)
            return out

        def tally() -> tuple[int, bytes]:
            return relayed, last

        self._tally = tally

        def metered_finish() -> bytes:
            rest = splitter.flush()
            if rest and has_usage(rest):
                # A last event without its blank line: forwarded or not (see conclude), its usage counts.
                usage = take_usage(rest + b"\n\n", False)[1]
                if usage is not None:
                    self._usage = usage
            return conclude(rest.strip(), last)

        return metered_step, metered_finish, fail
