"""Wire API ``openai-codex-responses``: the ChatGPT Codex backend (``{base}/codex/responses``).

Facts: ``reference/provider-facts.md`` §8 "OpenAI Codex". The body is an OpenAI Responses body
(:func:`providers.wire.openai_responses.build_body`) with what the ChatGPT backend requires:

* ``store: false`` and ``stream: true`` **always**: for a client that did not ask for a stream the SSE answer
  is decoded with the stream decoder and assembled by :func:`providers.canonical.collect`;
* ``instructions`` always present (the system prompt, ``""`` without one);
* ``include: ["reasoning.encrypted_content"]``, ``text.verbosity`` (default ``"low"``),
  ``tool_choice: "auto"`` and ``parallel_tool_calls: true`` unless the client chose otherwise;
* ``prompt_cache_key`` and the ``session-id`` / ``x-client-request-id`` headers when the client gave a session id;
* no ``max_output_tokens`` (the backend answers 400 "Unsupported parameter: max_output_tokens") and no
  ``metadata``; ``service_tier`` passes on.

Reasoning is tagged with its issuer (:func:`providers.wire.replay.issuer` over this API's name): encrypted
content issued by the ChatGPT backend is only replayed to it. Headers (account id, originator, SSE) come
from the ``codex`` cloud adapter (:mod:`providers.cloud.codex`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec

from ..canonical import Request, Response, collect
from ..errors import SwitchboardError, UpstreamError
from ..sse import SSEParser
from .base import UpstreamCall, WireTarget
from .openai_completions import upstream_error
from .openai_responses import build_body
from .openai_responses import decode_response as decode_response_object
from .openai_responses_stream import ResponsesStreamDecoder
from .replay import issuer

__all__ = ["API", "SOURCE", "OpenAICodexResponses", "codex_url"]

log = logging.getLogger("switchboard")

SOURCE = "openai-codex-responses"
_INCLUDE = "reasoning.encrypted_content"
_DEFAULT_VERBOSITY = "low"
#: Fields the ChatGPT backend rejects with 400 "Unsupported parameter", or does not document (``metadata``
#: tags requests for an API dashboard a ChatGPT subscription does not have).
_UNSUPPORTED = ("max_output_tokens", "metadata")


class OpenAICodexResponses:
    name = "openai-codex-responses"

    def build(self, req: Request, target: WireTarget) -> UpstreamCall:
        body = build_codex_body(req, target)
        return UpstreamCall(codex_url(target.base_url), msgspec.json.encode(body), session_headers(req.session_id))

    def decode_response(self, body: bytes, target: WireTarget) -> Response:
        """The SSE answer of a (always streamed) request, assembled into one response."""
        if body.lstrip()[:1] == b"{":  # something between us and the backend buffered it into JSON
            return decode_response_object(body, target, SOURCE)
        decoder = ResponsesStreamDecoder(target.provider_name, issuer(SOURCE, target))
        events = decoder.feed(body) + decoder.close()
        return collect(events, id=_response_id(body), model=target.model_id)

    def stream_decoder(self, target: WireTarget) -> ResponsesStreamDecoder:
        return ResponsesStreamDecoder(target.provider_name, issuer(SOURCE, target))

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        err = upstream_error(target.provider_name, status, body, headers)
        if status in (401, 403) and isinstance(err, UpstreamError):
            err.message = err.message.replace(
                "check the API key configured for this provider; 'switchboard models' lists what is set",
                f"the ChatGPT login was refused; run 'switchboard login {target.provider_id}' again",
            )
        return err


API = OpenAICodexResponses()


def codex_url(base_url: str) -> str:
    """``{base}/codex/responses``; a base already ending in ``/codex`` or ``/codex/responses`` is kept."""
    base = base_url.rstrip("/")
    if base.endswith("/codex/responses"):
        return base
    if base.endswith("/codex"):
        return base + "/responses"
    return base + "/codex/responses"


def build_codex_body(req: Request, target: WireTarget) -> dict[str, Any]:
    body = build_body(req, target, SOURCE)
    for name in _UNSUPPORTED:
        if body.pop(name, None) is not None:
            log.debug("%s: %s dropped (the ChatGPT backend rejects it)", target.provider_name, name)
    body["store"] = False
    body["stream"] = True
    body.setdefault("instructions", "")
    include = body.get("include") or []
    if _INCLUDE not in include:
        include = [*include, _INCLUDE]
    body["include"] = include
    text = body.get("text")
    text = dict(text) if isinstance(text, dict) else {}
    text.setdefault("verbosity", _DEFAULT_VERBOSITY)
    body["text"] = text
    body.setdefault("tool_choice", "auto")
    body.setdefault("parallel_tool_calls", True)
    return body


def session_headers(session_id: str | None) -> dict[str, str]:
    if not session_id or not session_id.isascii() or not session_id.isprintable():
        return {}
    return {"session-id": session_id, "x-client-request-id": session_id}


def _response_id(body: bytes) -> str:
    """The response id the stream announced (``response.created``/``completed``), or ""."""
    parser = SSEParser()
    for ev in [*parser.feed(body), *parser.close()]:
        try:
            payload = msgspec.json.decode(ev.data)
        except msgspec.DecodeError:
            continue
        response = payload.get("response") if isinstance(payload, dict) else None
        if isinstance(response, dict) and response.get("id"):
            return str(response["id"])
    return ""
