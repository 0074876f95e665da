"""The answer side of ``bedrock-converse-stream``: Converse JSON, ConverseStream event streams, errors.

Used through :data:`providers.wire.bedrock_converse.API`. ConverseStream answers with AWS event-stream
frames (binary: prelude with lengths and CRC32, headers, JSON payload, message CRC32), decoded with
botocore's own parser. Each frame carries ``:message-type`` (``event`` | ``exception`` | ``error``) and,
for events, ``:event-type``::

    messageStart            {"role": "assistant"}
    contentBlockStart       {"contentBlockIndex", "start": {"toolUse": {"toolUseId", "name"}}}
    contentBlockDelta       {"contentBlockIndex", "delta": {"text"} | {"toolUse": {"input"}}
                              | {"reasoningContent": {"text"} | {"signature"} | {"redactedContent"}}}
    contentBlockStop        {"contentBlockIndex"}
    messageStop             {"stopReason"}; a stream without it was cut short
    metadata                {"usage": {inputTokens, outputTokens, cacheReadInputTokens, cacheWriteInputTokens}}

An exception frame (``:exception-type: throttlingException``, payload ``{"message"}``) ends the stream
with a :class:`StreamError` whose status follows :data:`_EXCEPTION_STATUS`, as HTTP error bodies do.
Token counts follow the canonical (OpenAI) convention: input tokens include cache reads and writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from botocore.eventstream import EventStreamBuffer, ParserError

from ..canonical import (
    Block,
    Event,
    Finish,
    FinishReason,
    Response,
    StreamError,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from ..errors import SwitchboardError, UpstreamError, UpstreamUnreachable

__all__ = ["NAME", "ConverseStreamDecoder", "decode_converse", "exception_status", "upstream_error"]

NAME = "bedrock-converse-stream"

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
#: Bedrock exception names (lower-cased; streams say ``throttlingException``, headers ``ThrottlingException``).
_EXCEPTION_STATUS = {
    "throttlingexception": 429,
    "servicequotaexceededexception": 429,
    "validationexception": 400,
    "accessdeniedexception": 403,
    "unrecognizedclientexception": 403,
    "invalidsignatureexception": 403,
    "resourcenotfoundexception": 404,
    "modeltimeoutexception": 408,
    "modelerrorexception": 424,
    "modelnotreadyexception": 503,
    "serviceunavailableexception": 503,
    "modelstreamerrorexception": 500,
    "internalserverexception": 500,
}
_RETRY_HEADERS = ("retry-after",)


def exception_status(name: str, default: int) -> int:
    """The HTTP status for a Bedrock exception name (``ThrottlingException:http://...`` allowed)."""
    return _EXCEPTION_STATUS.get(name.split(":", 1)[0].strip().lower(), default)


def decode_converse(body: bytes, provider: str, model: str, source: str = NAME) -> Response:
    """A ``Converse`` JSON answer as a canonical :class:`Response`."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamError(f"{provider}: the answer is not valid JSON ({exc})", status=502) from exc
    message = ((data.get("output") or {}).get("message") or {}) if isinstance(data, dict) else {}
    if not isinstance(message, dict) or not isinstance(data, dict):
        raise UpstreamError(f"{provider}: unexpected answer {data!s}", status=502)
    content: list[Block] = []
    for block in message.get("content") or ():
        if "text" in block:
            content.append(Text(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = msgspec.json.encode(use.get("input") or {}).decode()
            content.append(ToolCall(use.get("toolUseId", ""), use.get("name", ""), arguments))
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]
            if "redactedContent" in reasoning:
                content.append(Thinking(redacted=reasoning["redactedContent"], source=source))
            else:
                text = reasoning.get("reasoningText") or {}
                content.append(Thinking(text.get("text", ""), signature=text.get("signature") or None, source=source))
    return Response(
        id=f"bedrock-{uuid.uuid4().hex}",
        model=model,
        content=content,
        finish_reason=_map_stop_reason(data.get("stopReason")),
        usage=_convert_usage(data.get("usage") or {}),
    )


def upstream_error(provider: str, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
    """An HTTP error answer: ``{"message"}`` with the exception name in ``x-amzn-errortype``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    kind = lowered.get("x-amzn-errortype", "").split(":", 1)[0].strip()
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = body.decode("utf-8", "replace").strip()  # masked, then cut, by the caller
    if isinstance(data, dict):
        message = str(data.get("message") or data.get("Message") or kind or f"HTTP {status}")
        kind = kind or str(data.get("__type", "")).rsplit("#", 1)[-1]
    else:
        message = str(data) or kind or f"HTTP {status}"
    if status in (401, 403):
        message += " (check the AWS credentials: 'switchboard models' shows where they come from)"
    kept = {h: v for h in _RETRY_HEADERS if (v := lowered.get(h))}
    return UpstreamError(
        f"{provider}: {message}", status=exception_status(kind, status), type_=kind or None, headers=kept
    )


class ConverseStreamDecoder:
    """AWS event-stream bytes (split anywhere) → canonical events."""

    __slots__ = ("_blocks", "_buffer", "_done", "_finished", "_next_tool", "_provider", "_source")

    def __init__(self, provider: str, source: str = NAME) -> None:
        self._provider = provider
        #: Who issued the reasoning signatures this stream carries (see providers.wire.replay).
        self._source = source
        self._buffer = EventStreamBuffer()
        #: Bedrock contentBlockIndex → our tool index, for toolUse blocks.
        self._blocks: dict[int, int] = {}
        self._next_tool = 0
        self._finished = False
        self._done = False

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        if self._done:
            return out
        self._buffer.add_data(chunk)
        try:
            for message in self._buffer:
                self._handle(message.headers, message.payload, out)
                if self._done:
                    break
        except ParserError as exc:
            self._fail(UpstreamError(f"{self._provider}: corrupt event stream ({exc})", status=502), out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        if not self._done and not self._finished:
            self._fail(UpstreamUnreachable(f"{self._provider}: stream ended early (no messageStop event)"), out)
        self._done = True
        return out

    def _handle(self, headers: Mapping[str, Any], payload: bytes, out: list[Event]) -> None:
        kind = headers.get(":message-type", "event")
        if kind == "exception":
            name = str(headers.get(":exception-type", "internalServerException"))
            self._fail(self._error(name, payload), out)
            return
        if kind == "error":
            code = str(headers.get(":error-code", "InternalServerException"))
            message = str(headers.get(":error-message", code))
            self._fail(UpstreamError(f"{self._provider}: {message}", status=exception_status(code, 500)), out)
            return
        try:
            data = msgspec.json.decode(payload) if payload else {}
        except msgspec.DecodeError:
            self._fail(UpstreamError(f"{self._provider}: invalid JSON in a stream event", status=502), out)
            return
        if isinstance(data, dict):
            self._on_event(str(headers.get(":event-type", "")), data, out)

    def _on_event(self, event: str, data: dict[str, Any], out: list[Event]) -> None:
        if event == "contentBlockDelta":
            self._on_delta(data.get("contentBlockIndex", -1), data.get("delta") or {}, out)
        elif event == "contentBlockStart":
            use = (data.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                tool = self._blocks[data.get("contentBlockIndex", -1)] = self._next_tool
                self._next_tool += 1
                out.append(ToolCallStart(tool, use.get("toolUseId", ""), use.get("name", "")))
        elif event == "contentBlockStop":
            tool = self._blocks.pop(data.get("contentBlockIndex", -1), -1)
            if tool >= 0:
                out.append(ToolCallEnd(tool))
        elif event == "messageStop":
            self._finished = True
            out.append(Finish(_map_stop_reason(data.get("stopReason"))))
        elif event == "metadata" and isinstance(data.get("usage"), dict):
            out.append(UsageEvent(_convert_usage(data["usage"])))

    def _on_delta(self, index: int, delta: dict[str, Any], out: list[Event]) -> None:
        if delta.get("text"):
            out.append(TextDelta(delta["text"]))
        elif isinstance(delta.get("toolUse"), dict):
            tool = self._blocks.get(index, -1)
            if tool >= 0 and delta["toolUse"].get("input"):
                out.append(ToolCallDelta(tool, delta["toolUse"]["input"]))
        elif isinstance(delta.get("reasoningContent"), dict):
            reasoning = delta["reasoningContent"]
            if reasoning.get("text"):
                out.append(ThinkingDelta(reasoning["text"], source=self._source))
            if reasoning.get("signature"):
                out.append(ThinkingDelta(signature=reasoning["signature"], source=self._source))
            if reasoning.get("redactedContent"):
                out.append(ThinkingDelta(redacted=reasoning["redactedContent"], source=self._source))

    def _error(self, name: str, payload: bytes) -> UpstreamError:
        try:
            data = msgspec.json.decode(payload) if payload else {}
        except msgspec.DecodeError:
            data = {}
        message = data.get("message") or data.get("Message") if isinstance(data, dict) else None
        return UpstreamError(f"{self._provider}: {message or name}", status=exception_status(name, 500), type_=name)

    def _fail(self, error: SwitchboardError, out: list[Event]) -> None:
        out.append(StreamError(error))
        self._done = True


def _map_stop_reason(reason: Any) -> FinishReason:
    return _STOP_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"


def _convert_usage(usage: dict[str, Any]) -> Usage:
    cache_read = int(usage.get("cacheReadInputTokens") or 0)
    cache_write = int(usage.get("cacheWriteInputTokens") or 0)
    return Usage(
        input_tokens=int(usage.get("inputTokens") or 0) + cache_read + cache_write,
        output_tokens=int(usage.get("outputTokens") or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
