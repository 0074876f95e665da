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
from providers.wire.base import UpstreamCall

from .asgi import Receive, Scope, Send
from .pipeline import Leg, Pipeline
from .router import Target
from .runtime import Runtime
from .streaming import DONE
from .surfaces.openai_chat_in import decode_request
from .surfaces.openai_chat_out import ChunkEncoder, encode_response
from .surfaces.openai_chat_types import decode_body
from .translated import StreamEncoder
from .upstream_call import wire_target

__all__ = ["OpenAIChat", "handle_chat_completions"]

log = logging.getLogger("switchboard")

_JSON = b"application/json"


class _AnyObject(msgspec.Struct):
    """Decoding into a struct without fields checks the JSON's syntax while skipping its content."""


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

    def passthrough(self, req: dict[str, Any], target: Target, auth: ResolvedAuth, release: bool) -> Leg:
        # A fallback Target may need the request again: edit a copy unless this is the last one.
        body = req if release else dict(req)
        adapted = target.provider.adapter
        # A cloud adapter may name another upstream model (Azure's deployment) through the credential.
        model = wire_target(target, auth).model_id if adapted else target.upstream_model
        openai_completions.adapt_request(body, model, target.compat, target.model)
        payload = msgspec.json.encode(body)
        stream = body.get("stream") is True
        # For a cloud adapter, read once here from the decoded body (adapters never decode bodies).
        facts = facts_from_chat(body) if adapted else None
        if release:
            req.clear()  # as large as the body: free it before the upstream call, not after the answer
        return _PassthroughLeg(target.provider.name, payload, stream, facts)

    def canonical(self, req: dict[str, Any], target: Target, release: bool) -> Request:
        creq = decode_request(req, target.upstream_model, target.provider.name)
        if release:
            req.clear()
        return creq

    def encode_response(self, answer: Response, model: str) -> bytes:
        return msgspec.json.encode(encode_response(answer, model))

    def stream_encoder(self, model: str, include_usage: bool) -> StreamEncoder:
        return ChunkEncoder(model, include_usage)


_PIPELINE = Pipeline(OpenAIChat())


async def handle_chat_completions(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await _PIPELINE.handle(rt, scope, receive, send)


class _PassthroughLeg:
    """OpenAI chat to an OpenAI-compatible upstream: bytes out as they came, only their framing checked."""

    __slots__ = ("_name", "_payload", "facts", "stream")

    def __init__(self, name: str, payload: bytes, stream: bool, facts: RequestFacts | None) -> None:
        self._name = name
        self._payload = payload
        self.stream = stream
        self.facts = facts

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        return UpstreamCall(openai_completions.chat_url(auth.base_url), self._payload)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return openai_completions.upstream_error(self._name, status, body, headers)

    def answer(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            msgspec.json.decode(body, type=_AnyObject)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("%s answered %s with a body that is not a JSON object: %s", self._name, status, exc)
            raise UpstreamUnreachable(
                f"{self._name} answered {status} with a body that is not a JSON object ({exc}); "
                "the answer was cut short or the baseUrl points at something else: retry, or check the baseUrl"
            ) from exc
        ctype = headers.get("content-type")
        return status, body, [(b"content-type", ctype.encode() if ctype else _JSON)]

    def usage(self) -> Usage | None:
        return None  # read from the relayed bytes when usage recording lands (see proxy.pipeline.Steps)

    def stream_steps(
        self,
    ) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        """Complete events forwarded as they are, never parsed.

        Whether the provider finished is read off the tail of the last bytes forwarded (``[DONE]``), so
        the per-chunk cost stays one boundary check.
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

        def finish() -> bytes:
            rest = splitter.flush().strip()
            if rest.endswith(b"[DONE]") and rest.startswith(b"data:"):
                return DONE  # the last event lacked its blank line; nothing else was held back
            if not rest and last[-16:].rstrip(b"\r\n").endswith(b"[DONE]"):
                return b""
            cut = " inside an event" if rest else " without data: [DONE]"
            log.warning("%s's stream ended early%s", name, cut)
            return fail(
                UpstreamUnreachable(f"{name}: stream ended early{cut} (the answer is incomplete); retry the request")
            )

        def fail(exc: Exception) -> bytes:
            err = exc if isinstance(exc, SwitchboardError) else UpstreamUnreachable(f"{name}: {type(exc).__name__}")
            return encode_event(msgspec.json.encode(err.envelope())) + DONE

        return step, finish, fail
