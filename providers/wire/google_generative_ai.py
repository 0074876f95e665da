"""Wire API ``google-generative-ai``: Gemini's ``generateContent``, also spoken by Vertex AI and by
OpenCode Zen for its Gemini models.

``POST {base}/models/{model}:generateContent``, or ``:streamGenerateContent?alt=sse`` whose SSE events
are each a whole ``GenerateContentResponse``. Authentication is not this module's business: the
credential headers carry ``x-goog-api-key`` (or Vertex's bearer token). Vertex reuses everything here
with its own resource path: ``GoogleGenerativeAI("google-vertex", model_path=..., key_hint=...)``.
This module encodes requests and errors; the answer side (JSON and SSE) lives in :mod:`.google_stream`.

Translation notes (the canonical model is in :mod:`providers.canonical`):

* Gemini has no tool-call ids of its own on most models: a call gets the ``id`` Gemini sent, else
  ``call_{responseId}_{n}``; a result is matched back by function name (``ToolResult.name``, or the
  name of the call with that id earlier in the conversation). Only Gemini's own ids are sent back.
* ``thoughtSignature`` is replayed byte for byte, only to the provider that issued it (:mod:`.replay`;
  the Gemini API and Vertex are different signers): on a function call it is ``ToolCall.signature``
  (``signature_source`` its issuer; a call whose issuer the client did not keep is replayed as it came);
  on a thought part it is ``Thinking.signature``; on a text part it becomes an empty :class:`Thinking`
  after the text, and is reattached to that text on replay. Thinking from other providers, and
  thought summaries without a signature, are not sent back.
* ``seed`` maps to ``generationConfig.seed``. ``presence_penalty`` and ``frequency_penalty`` map to
  ``presencePenalty``/``frequencyPenalty`` on the models that take them (Gemini 1.x and 2.0; 2.5 and
  later answer 400 "Penalty is not enabled for models/..."), and are dropped elsewhere, as a zero is.
  ``service_tier`` and ``metadata`` have no equivalent and are dropped; ``n`` other than 1 is refused
  by the surface.
* ``web_search`` becomes the ``google_search`` tool (Gemini 2.0+), only when there are no function tools
  (the API refuses the two together); otherwise it is dropped.
* Gemini 3 refuses a function call without a signature in history (e.g. a conversation begun on
  another provider); such a turn gets the documented ``skip_thought_signature_validator`` value.
"""

from __future__ import annotations

import contextlib
import math
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ..canonical import (
    Event,
    Finish,
    Image,
    Message,
    Request,
    Response,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    UsageEvent,
    collect,
)
from ..errors import InvalidRequest, SwitchboardError, UpstreamError
from ..urlpath import path_segment
from .base import UpstreamCall, WireTarget
from .google_schema import convert_tool_choice, convert_tools, generation_config, model_family
from .google_stream import GENERATED_ID, GeminiDecoder, decode_json
from .replay import issuer

__all__ = ["API", "GoogleGenerativeAI", "gemini_model_path", "model_url"]

_SKIP_SIGNATURE = "skip_thought_signature_validator"
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"} | {
    404: "not_found_error",
    429: "rate_limit_error",
}
_RETRY_HEADERS = ("retry-after", "retry-after-ms")
_COLLECTIONS = frozenset({"models", "tunedModels"})
_TAKES_PENALTIES = re.compile(r"gemini-(?:1\.\d|2\.0)(?![\d.])")


def gemini_model_path(target: WireTarget) -> str:
    """The Gemini API resource of a model: ``models/{id}`` (an id already naming its collection keeps it),
    the id one percent-encoded segment (:func:`~providers.urlpath.path_segment`)."""
    mid = target.model_id
    collection, sep, name = mid.partition("/")
    if not (sep and collection in _COLLECTIONS):
        collection, name = "models", mid
    return f"{collection}/{path_segment(name, provider=target.provider_name, safe='@')}"


def model_url(base_url: str, model_path: str, stream: bool) -> str:
    """``{base_url}/{model_path}:generateContent`` or ``:streamGenerateContent?alt=sse``."""
    method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
    return f"{base_url.rstrip('/')}/{model_path.strip('/')}{method}"


class GoogleGenerativeAI:
    """The :class:`~providers.wire.base.WireAPI` for ``generateContent`` (see the module docstring)."""

    def __init__(
        self,
        name: str = "google-generative-ai",
        *,
        model_path: Callable[[WireTarget], str] = gemini_model_path,
        key_hint: str = "set GEMINI_API_KEY or run 'switchboard login google'",
    ) -> None:
        self.name = name
        self._model_path = model_path
        self._key_hint = key_hint

    def build(self, req: Request, target: WireTarget) -> UpstreamCall:
        body = self.build_body(req, target)
        return UpstreamCall(model_url(target.base_url, self._model_path(target), req.stream), msgspec.json.encode(body))

    def build_body(self, req: Request, target: WireTarget) -> dict[str, Any]:
        """The ``GenerateContentRequest`` JSON object (raises :class:`InvalidRequest`)."""
        body: dict[str, Any] = {"contents": _convert_messages(req.messages, issuer(self.name, target), target)}
        system = [{"text": t.text} for t in req.system if t.text]
        if system:
            body["systemInstruction"] = {"parts": system}
        if req.tools:
            body["tools"] = convert_tools(req.tools)
            choice = convert_tool_choice(req)
            if choice is not None:
                body["toolConfig"] = {"functionCallingConfig": choice}
        elif req.web_search and _has_google_search(target.model_id):
            # generateContent refuses google_search next to function declarations ("Tool use with function
            # calling is unsupported", unless opted in on Gemini 3), so search is offered only without
            # function tools; and without toolConfig, which needs function declarations.
            body["tools"] = [{"google_search": {}}]
        config = generation_config(req, target)
        _add_sampling(config, req, target)
        if config:
            body["generationConfig"] = config
        return body

    def decode_response(self, body: bytes, target: WireTarget) -> Response:
        data = decode_json(body, target)
        decoder = self.stream_decoder(target)
        events: list[Event] = []
        for chunk in data if isinstance(data, list) else [data]:
            decoder.handle(chunk, events)
        if not decoder.finished:
            events.append(Finish("stop"))
        if decoder.usage is not None:
            events.append(UsageEvent(decoder.usage))
        resp = collect(events, id=decoder.response_id or f"gemini-{uuid.uuid4().hex}", model=decoder.model)
        if not resp.content:
            resp.content.append(Text(""))
        return resp

    def stream_decoder(self, target: WireTarget) -> GeminiDecoder:
        return GeminiDecoder(target, issuer(self.name, target), self.upstream_error)

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError:
            text = body.decode("utf-8", "replace").strip()
            data = {"error": {"message": text or f"HTTP {status}"}}
        if isinstance(data, list) and data:
            data = data[0]  # streaming endpoints wrap the error in a list
        err = data.get("error") if isinstance(data, dict) else None
        return self.upstream_error(target, status, err if isinstance(err, dict) else {}, headers)

    def upstream_error(
        self, target: WireTarget, status: int, err: dict[str, Any], headers: Mapping[str, str]
    ) -> UpstreamError:
        """A Google ``{"code", "message", "status", "details"}`` error as :class:`UpstreamError`.

        The message is not cut here: it may echo the key, and is masked before it is cut.
        """
        message = str(err.get("message") or f"HTTP {status}")
        details = [d for d in err.get("details") or () if isinstance(d, dict)]
        if status in (401, 403) or any(d.get("reason") == "API_KEY_INVALID" for d in details):
            message += f" ({self._key_hint})"
        kept = {h: v for h in _RETRY_HEADERS if (v := headers.get(h))}
        delay = next((d.get("retryDelay") for d in details if "retryDelay" in d), None)
        if "retry-after" not in kept and isinstance(delay, str) and delay.endswith("s"):
            with contextlib.suppress(ValueError):
                kept["retry-after"] = str(math.ceil(float(delay[:-1])))
        code = err.get("status")
        return UpstreamError(
            f"{target.provider_name}: {message}",
            status=status,
            type_=_ERROR_TYPES.get(status),
            code=code if isinstance(code, str) else None,
            headers=kept,
        )


API = GoogleGenerativeAI()


# --- request ----------------------------------------------------------------------------------


def _has_google_search(model_id: str) -> bool:
    """Gemini 2.0 and later have ``google_search`` (1.x had ``google_search_retrieval``; Gemma has none)."""
    mid = model_id.lower().removeprefix("models/")
    return mid.startswith("gemini-") and not mid.startswith("gemini-1")


def _add_sampling(config: dict[str, Any], req: Request, target: WireTarget) -> None:
    if req.seed is not None:
        config["seed"] = req.seed
    if not _TAKES_PENALTIES.search(target.model_id.lower()):
        return
    for key, value in (("presencePenalty", req.presence_penalty), ("frequencyPenalty", req.frequency_penalty)):
        if value:
            config[key] = value


def _convert_messages(messages: list[Message], source: str, target: WireTarget) -> list[dict[str, Any]]:
    names = {b.id: b.name for m in messages for b in m.content if isinstance(b, ToolCall)}
    needs_signature = model_family(target.model_id).startswith("gemini-3")
    contents: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if msg.role == "assistant":
            role, parts = "model", _convert_assistant(msg, source, needs_signature)
        else:
            role, parts = "user", _convert_user(msg, names, f"messages[{i}]")
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    for content in contents:
        # Function responses first, then what the tools showed (images), as Gemini expects.
        if content["role"] == "user":
            content["parts"].sort(key=lambda p: "functionResponse" not in p)
    return contents


def _convert_user(msg: Message, names: dict[str, str], where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in msg.content:
        if isinstance(block, Text) and block.text:
            parts.append({"text": block.text})
        elif isinstance(block, Image):
            parts.append(_convert_image(block, f"{where}.content"))
        elif isinstance(block, ToolResult):
            parts.append(_convert_tool_result(block, names, where))
            parts.extend(_convert_image(b, f"{where}.content") for b in block.content if isinstance(b, Image))
    return parts


def _convert_tool_result(block: ToolResult, names: dict[str, str], where: str) -> dict[str, Any]:
    name = block.name or names.get(block.tool_call_id)
    if not name:
        raise InvalidRequest(
            f"{where}: the tool result for call {block.tool_call_id!r} does not say which function it answers, "
            "and no earlier assistant message made that call; Gemini matches results to calls by function name",
            param=where,
        )
    text = "\n".join(b.text for b in block.content if isinstance(b, Text))
    response: dict[str, Any] = {"name": name, "response": {"error" if block.is_error else "output": text}}
    if not block.tool_call_id.startswith(GENERATED_ID):
        response["id"] = block.tool_call_id
    return {"functionResponse": response}


def _convert_image(image: Image, where: str) -> dict[str, Any]:
    if image.data:
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data}}
    url = image.url or ""
    if url.startswith("data:"):
        head, _, data = url.partition(",")
        if head.endswith(";base64") and data:
            return {"inlineData": {"mimeType": head[5:-7] or "image/png", "data": data}}
    elif url.startswith(("https://", "http://", "gs://")):
        file_data = {"fileUri": url}
        if image.media_type:
            file_data["mimeType"] = image.media_type
        return {"fileData": file_data}
    raise InvalidRequest(
        f"{where}: Gemini takes images as base64 data: URLs or http(s)/gs:// URLs, not {url[:40]!r}",
        param=where,
    )


def _convert_assistant(msg: Message, source: str, needs_signature: bool) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in msg.content:
        if isinstance(block, Text) and block.text:
            parts.append({"text": block.text})
        elif isinstance(block, Thinking) and block.signature and block.source == source:
            last = parts[-1] if parts else None
            if block.text:
                parts.append({"thought": True, "text": block.text, "thoughtSignature": block.signature})
            elif last is not None and "text" in last and "thoughtSignature" not in last and not last.get("thought"):
                last["thoughtSignature"] = block.signature  # it came on this text part
            else:
                parts.append({"text": "", "thoughtSignature": block.signature})
        elif isinstance(block, ToolCall):
            parts.append(_convert_tool_call(block, block.signature_source in (None, source)))
    calls = [p for p in parts if "functionCall" in p]
    if needs_signature and calls and not any("thoughtSignature" in p for p in calls):
        calls[0]["thoughtSignature"] = _SKIP_SIGNATURE
    return parts


def _convert_tool_call(call: ToolCall, signed_here: bool) -> dict[str, Any]:
    try:
        args = msgspec.json.decode(call.arguments or "{}")
    except msgspec.DecodeError:
        args = None
    if not isinstance(args, dict):
        raise InvalidRequest(
            f"messages: the arguments of tool call {call.id!r} ({call.name}) are not a JSON object; "
            "Gemini needs function call arguments as an object",
            param="messages",
        )
    fn: dict[str, Any] = {"name": call.name, "args": args}
    if not call.id.startswith(GENERATED_ID):
        fn["id"] = call.id
    part: dict[str, Any] = {"functionCall": fn}
    if call.signature and signed_here:
        part["thoughtSignature"] = call.signature
    return part
