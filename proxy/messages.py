"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API on :mod:`proxy.pipeline`.

What Claude Code (``ANTHROPIC_BASE_URL``) and the ``anthropic`` SDKs speak. Its native API is
``anthropic-messages``: a Target speaking it (Anthropic, MiniMax, Kimi For Coding, Claude on Vertex's
``rawPredict``, gateways) takes the passthrough (:class:`.surfaces.messages_pass.PassthroughLeg`:
the client's body with only the model replaced and what the upstream refuses removed, bytes relayed
back); every other API goes through the canonical model (:mod:`.surfaces.messages_in` /
:mod:`.surfaces.messages_out`). Errors use Anthropic's envelope ``{"type": "error", "error": {...}}``.

Per request the surface keeps the client's ``anthropic-version``, ``anthropic-beta`` (filtered per
upstream by :mod:`providers.betas`) and ``X-Claude-Code-Session-Id`` (logged at debug as the session id,
the canonical ``session_id`` on the translated path). ``?beta=true`` is accepted (routes match the path).

``count_tokens`` is forwarded where the upstream counts (Anthropic's ``/v1/messages/count_tokens``, Claude
on Vertex's ``count-tokens:rawPredict``, Gemini's ``countTokens``); elsewhere it is estimated
(:func:`proxy.surfaces.messages_count.estimate_tokens`) without an upstream call.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

from providers.canonical import Response
from providers.credentials import ResolvedAuth
from providers.errors import SwitchboardError
from providers.wire.base import WireAPI

from .asgi import Receive, Scope, Send, read_body_buffer, send_json
from .outcome import request_id_from
from .pipeline import Leg, Pipeline
from .router import Target
from .routing.table import take_fallbacks
from .runtime import Runtime
from .surfaces.messages_count import GeminiCountLeg, counted_upstream, estimate_tokens
from .surfaces.messages_in import to_canonical
from .surfaces.messages_out import MessageStreamEncoder, encode_response, error_envelope
from .surfaces.messages_pass import ClientHeaders, PassthroughLeg
from .surfaces.messages_types import decode_body, validate
from .translated import StreamEncoder, TranslatedLeg

__all__ = ["AnthropicMessages", "anthropic_model_list", "handle_count_tokens", "handle_messages"]

log = logging.getLogger("switchboard")

_JSON = [(b"content-type", b"application/json")]


class AnthropicMessages:
    """The Messages surface (see :class:`proxy.pipeline.Surface`); one per request (it holds the headers)."""

    native_api = "anthropic-messages"

    def __init__(self, headers: ClientHeaders, *, count: bool = False) -> None:
        self.headers = headers
        self.count = count
        self.path = "/v1/messages/count_tokens" if count else "/v1/messages"

    def decode(self, body: bytearray) -> dict[str, Any]:
        return decode_body(body, need_max_tokens=not self.count)

    def model(self, req: dict[str, Any]) -> str:
        model: str = req["model"]
        return model

    def fallbacks(self, req: dict[str, Any]) -> tuple[str, ...]:
        return take_fallbacks(req)

    def max_output(self, req: dict[str, Any]) -> int | None:
        value = req.get("max_tokens")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    def passthrough(
        self, req: dict[str, Any], target: Target, auth: ResolvedAuth, release: bool, *, meter: bool = False
    ) -> Leg:
        body = req if release else dict(req)
        return PassthroughLeg(body, target, auth, self.headers, count=self.count, meter=meter and not self.count)

    def translate(self, req: dict[str, Any], target: Target, wire: WireAPI, release: bool) -> Leg:
        typed = validate(req)
        creq = to_canonical(typed, target.upstream_model, target.model, target.provider.name)
        creq.session_id = self.headers.session_id
        if release:
            req.clear()
        if self.count:
            creq.stream = False
            return GeminiCountLeg(wire, target, creq)
        return TranslatedLeg(wire, target, creq, self.encode_response, self.stream_encoder)

    def error_body(self, exc: SwitchboardError) -> bytes:
        return msgspec.json.encode(error_envelope(exc))

    def encode_response(self, answer: Response, model: str) -> bytes:
        return msgspec.json.encode(encode_response(answer, model))

    def stream_encoder(self, model: str, include_usage: bool) -> StreamEncoder:
        return MessageStreamEncoder(model, include_usage)


async def handle_messages(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    headers = ClientHeaders.from_scope(scope)
    if headers.session_id:
        log.debug("messages request for Claude Code session %s", headers.session_id)
    await Pipeline(AnthropicMessages(headers)).handle(rt, scope, receive, send)


async def handle_count_tokens(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """Forwarded through the pipeline where the upstream counts; else estimated here, no upstream call."""
    surface = AnthropicMessages(ClientHeaders.from_scope(scope), count=True)
    pipeline = Pipeline(surface)
    if scope["method"] != "POST":
        await pipeline.handle(rt, scope, receive, send)
        return
    # Answered here (no upstream): with the id every answer carries, as the pipeline's own answers.
    answer_headers = [*_JSON, (b"x-request-id", request_id_from(scope["headers"]).encode())]
    try:
        await rt.steps.authenticate(scope)
        body = bytes(await read_body_buffer(receive, scope))
        req = surface.decode(bytearray(body))
        target = rt.router.resolve(surface.model(req))
        if not counted_upstream(target):
            count = estimate_tokens(validate(req))
            await send_json(send, 200, msgspec.json.encode({"input_tokens": count}), answer_headers)
            return
    except SwitchboardError as exc:
        await send_json(send, exc.status, surface.error_body(exc), answer_headers)
        return
    await pipeline.handle(rt, scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that gives ``body`` once more, then the client's own messages (its disconnect)."""
    given = False

    async def replay() -> Any:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def anthropic_model_list(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /v1/models`` entries in Anthropic's list shape (for a request with ``anthropic-version``)."""
    data = [
        {
            "type": "model",
            "id": e["id"],
            "display_name": e.get("name") or e["id"],
            "created_at": _rfc3339(e.get("created")),
        }
        for e in entries
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def _rfc3339(created: Any) -> str:
    seconds = created if isinstance(created, int | float) and not isinstance(created, bool) else 0
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
