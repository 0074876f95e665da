"""``POST /v1/completions``: OpenAI's legacy text completions, passed through to the servers that have it.

Only an ``openai-completions`` Target serves it (OpenAI, vLLM, Ollama, LM Studio, other OpenAI-compatible
servers): the body goes up with its model replaced and nothing else changed (the chat passthrough's compat
edits are chat fields: renaming ``max_tokens`` would break this endpoint), to ``{baseUrl}/completions``, and
the answer comes back as bytes through the chat passthrough's leg (:class:`proxy.chat._PassthroughLeg`:
framing checks, metering, errors). Every other API has no such endpoint and no canonical form of a bare
prompt worth faking, so the translated branch is a 400 that names the provider and the endpoint to use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from providers.credentials import ResolvedAuth
from providers.errors import InvalidRequest, SwitchboardError
from providers.request_facts import facts_from_chat
from providers.wire import openai_completions
from providers.wire.base import UpstreamCall, WireAPI

from .asgi import Receive, Scope, Send
from .chat import _PassthroughLeg
from .metering import request_usage, worst_case_output
from .pipeline import Leg, Pipeline
from .router import Target
from .routing.table import take_fallbacks
from .runtime import Runtime
from .surfaces.openai_chat_types import decode_object
from .upstream_call import wire_target

__all__ = ["LegacyCompletions", "completions_url", "handle_completions"]

_PATH = "/v1/completions"


def completions_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/completions"


class LegacyCompletions:
    """The legacy completions surface (see :class:`proxy.pipeline.Surface`): passthrough only."""

    path = _PATH
    native_api = "openai-completions"

    def decode(self, body: bytearray) -> dict[str, Any]:
        return _decode(body)

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
        body = req if release else dict(req)  # a fallback Target may need the request again
        adapted = target.provider.adapter
        body["model"] = wire_target(target, auth).model_id if adapted else target.upstream_model
        stream = body.get("stream") is True
        if not target.compat.supports_usage_in_streaming:
            body.pop("stream_options", None)
        # Metered, a stream asks for its usage chunk; one the client did not ask for is not relayed to it.
        strip = meter and stream and bool(target.compat.supports_usage_in_streaming) and request_usage(body)
        payload = msgspec.json.encode(body)
        facts = facts_from_chat(body) if adapted else None
        if release:
            req.clear()
        return _CompletionsLeg(target.provider.name, payload, stream, facts, meter=meter, strip=strip)

    def translate(self, req: dict[str, Any], target: Target, wire: WireAPI, release: bool) -> Leg:
        raise InvalidRequest(
            f"{target.provider.name} has no legacy completions endpoint; use /v1/chat/completions "
            f"({target.public_id} speaks {target.api})",
            param="model",
            code="unsupported_endpoint",
        )

    def error_body(self, exc: SwitchboardError) -> bytes:
        return msgspec.json.encode(exc.envelope())


_PIPELINE = Pipeline(LegacyCompletions())


async def handle_completions(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await _PIPELINE.handle(rt, scope, receive, send)


class _CompletionsLeg(_PassthroughLeg):
    """The chat passthrough's leg, sent to ``/completions``; a 404 or 405 there says what to use."""

    __slots__ = ()

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        return UpstreamCall(completions_url(auth.base_url), self._payload)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        err = openai_completions.upstream_error(self._name, status, body, headers)
        if status in (404, 405):
            err.message += f" ({self._name} may not serve legacy completions at {_PATH}; use /v1/chat/completions)"
        return err


def _decode(body: bytearray) -> dict[str, Any]:
    """The body as a dict with a ``model`` string and a ``prompt``; the upstream checks the rest."""
    req = decode_object(body, "openai/gpt-3.5-turbo-instruct")
    if req.get("prompt") is None:
        raise InvalidRequest(
            "'prompt' is required: a string, an array of strings or of token ids "
            "(for 'messages', use /v1/chat/completions)",
            param="prompt",
        )
    return req
