"""The answer side of ``google-generative-ai``: ``GenerateContentResponse`` JSON and SSE → canonical events.

Used by :mod:`.google_generative_ai` (and so by Vertex). A function call gets the ``id`` Gemini sent, else
``call_{responseId}_{n}``; a ``thoughtSignature`` on a call or a part is kept with its issuer (``source``);
a finish reason other than stop/length/safety ends the text with a note saying why Gemini stopped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ..canonical import (
    Event,
    Finish,
    FinishReason,
    StreamError,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from ..errors import SwitchboardError, UpstreamError, UpstreamUnreachable
from ..sse import SSEParser
from .base import WireTarget

__all__ = ["GENERATED_ID", "ErrorFactory", "GeminiDecoder", "decode_json"]

#: The prefix of the call ids Switchboard makes up (Gemini sent none); they are never sent back.
GENERATED_ID = "call_"
_FILTERED = (
    "SAFETY",
    "RECITATION",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
)
_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "FINISH_REASON_UNSPECIFIED": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(_FILTERED, "content_filter"),
}

#: (target, HTTP status, Google error object, response headers) → the error to report.
ErrorFactory = Callable[[WireTarget, int, dict[str, Any], Mapping[str, str]], UpstreamError]


def decode_json(body: bytes, target: WireTarget) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamError(
            f"{target.provider_name}: the answer is not valid JSON ({exc})", status=502, code="bad_upstream_response"
        ) from exc


class GeminiDecoder:
    """GenerateContentResponse chunks → canonical events; also the stream decoder (SSE bytes in).

    ``source`` tags the thought signatures (:mod:`.replay`); ``error`` turns a Google error object met
    in the answer into the error to report.
    """

    def __init__(self, target: WireTarget, source: str, error: ErrorFactory) -> None:
        self._error = error
        self._target = target
        self._parser = SSEParser()
        self._calls = 0
        self._said = False
        self._failed = False
        self._fallback_id = uuid.uuid4().hex[:12]
        self._source = source
        self.finished = False
        self.usage: Usage | None = None
        self.response_id = ""
        self.model = target.model_id

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        for ev in self._parser.feed(chunk):
            self._event(ev.data, out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for ev in self._parser.close():
            self._event(ev.data, out)
        if self._failed:
            return out
        if not self.finished:
            out.append(StreamError(UpstreamUnreachable(f"{self._target.provider_name}: stream ended early")))
        elif self.usage is not None:
            out.append(UsageEvent(self.usage))
        return out

    def _event(self, data: str, out: list[Event]) -> None:
        if self._failed or not data.strip():
            return
        try:
            self.handle(msgspec.json.decode(data), out)
        except msgspec.DecodeError:
            self._fail(UpstreamError(f"{self._target.provider_name}: unreadable stream event", status=502), out)

    def _fail(self, error: SwitchboardError, out: list[Event]) -> None:
        self._failed = True
        out.append(StreamError(error))

    def handle(self, chunk: Any, out: list[Event]) -> None:
        """Translate one ``GenerateContentResponse`` (or an ``{"error": ...}`` object) into ``out``."""
        if not isinstance(chunk, dict) or isinstance(chunk.get("error"), dict):
            err = chunk.get("error") if isinstance(chunk, dict) else None
            status = err.get("code") if isinstance(err, dict) else None
            error = self._error(
                self._target, status if isinstance(status, int) else 502, err or {"message": str(chunk)}, {}
            )
            self._fail(error, out)
            return
        self.response_id = chunk.get("responseId") or self.response_id
        self.model = chunk.get("modelVersion") or self.model
        if isinstance(chunk.get("usageMetadata"), dict):
            self.usage = _convert_usage(chunk["usageMetadata"])
        candidates = chunk.get("candidates") or []
        if not candidates:
            feedback = chunk.get("promptFeedback") or {}
            if feedback.get("blockReason") and not self.finished:
                why = f"{feedback['blockReason']}" + (f" ({m})" if (m := feedback.get("blockReasonMessage")) else "")
                out += [TextDelta(f"The request was blocked by Gemini safety filters: {why}"), Finish("content_filter")]
                self.finished = True
            return
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or ():
            self._convert_part(part, out)
        reason = candidate.get("finishReason")
        if reason and not self.finished:
            self._finish(str(reason), candidate.get("finishMessage"), out)

    def _convert_part(self, part: dict[str, Any], out: list[Event]) -> None:
        signature = part.get("thoughtSignature")
        source = self._source
        call = part.get("functionCall")
        if isinstance(call, dict):
            index, self._calls, self._said = self._calls, self._calls + 1, True
            call_id = call.get("id") or f"{GENERATED_ID}{self.response_id or self._fallback_id}_{index}"
            args = msgspec.json.encode(call.get("args") or {}).decode()
            name = str(call.get("name") or "")
            start = ToolCallStart(index, call_id, name, signature, source if signature else None)
            out += [start, ToolCallDelta(index, args), ToolCallEnd(index)]
        elif part.get("thought") is True:
            if part.get("text") or signature:
                out.append(ThinkingDelta(part.get("text") or "", signature=signature, source=source))
        else:
            if part.get("text"):
                self._said = True
                out.append(TextDelta(part["text"]))
            if signature:
                out.append(ThinkingDelta("", signature=signature, source=source))

    def _finish(self, reason: str, message: Any, out: list[Event]) -> None:
        self.finished = True
        mapped = _FINISH.get(reason, "error")
        if mapped == "stop" and self._calls:
            mapped = "tool_calls"
        elif mapped == "content_filter" and not self._said:
            out.append(TextDelta(f"The answer was blocked by Gemini safety filters: {reason}"))
        elif mapped == "error":
            detail = f": {message}" if message else ""
            gap = "\n\n" if self._said else ""
            out.append(TextDelta(f"{gap}[Gemini stopped: {reason}{detail}]"))
        out.append(Finish(mapped))


def _convert_usage(meta: dict[str, Any]) -> Usage:
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return Usage(
        # Built-in tools' (search grounding, code execution) prompts are billed input outside promptTokenCount.
        input_tokens=int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0),
        output_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cache_read_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )
