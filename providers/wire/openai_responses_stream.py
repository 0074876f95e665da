"""Decoding side of wire API ``openai-responses``: the typed SSE event stream and the Response object.

The stream is a sequence of typed events (``event: response.output_text.delta`` / ``data: {...,"type": ...}``);
the ``type`` inside the JSON is authoritative (the ``event:`` line is optional behind some gateways).
Mapping to canonical events:

* ``response.output_text.delta`` / ``response.refusal.delta`` → :class:`TextDelta` (a refusal finishes as
  ``content_filter``);
* ``response.reasoning_summary_text.delta`` / ``response.reasoning_text.delta`` → :class:`ThinkingDelta`
  (summary parts joined by a blank line, as :func:`decode_response` joins them);
* ``response.output_item.done`` of a reasoning item → :class:`ThinkingDelta` carrying ``encrypted_content``
  and the item id, so the client can send the reasoning back on its next turn;
* ``response.output_item.added`` / ``response.function_call_arguments.delta`` / ``response.output_item.done``
  of a function call → :class:`ToolCallStart` / :class:`ToolCallDelta` / :class:`ToolCallEnd`;
* ``response.completed`` / ``response.incomplete`` → :class:`Finish` then :class:`UsageEvent`;
* ``response.failed`` / ``error`` → :class:`StreamError` with the status the error code implies.
"""

from __future__ import annotations

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
from ..errors import UpstreamError, UpstreamUnreachable
from ..sse import SSEParser

__all__ = ["SOURCE", "ResponsesStreamDecoder", "error_from", "finish_reason", "usage_from"]

#: ``Thinking.source`` of reasoning produced here; only such reasoning is replayed to this API.
SOURCE = "openai-responses"

_SUMMARY_SEPARATOR = "\n\n"
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})
_STATUS_BY_CODE = {
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "internal_error": 500,
    "server_is_overloaded": 503,
    "overloaded": 503,
    "vector_store_timeout": 504,
}
_CLIENT_CODE_PREFIXES = ("invalid_", "image_", "empty_image", "unsupported_", "failed_to_download", "context_length")


class ResponsesStreamDecoder:
    """Fed raw upstream bytes (split anywhere); returns canonical events (see the module docstring)."""

    def __init__(self, provider_name: str, source: str = SOURCE) -> None:
        self._provider = provider_name
        self._source = source
        self._sse = SSEParser()
        self._calls: dict[str, int] = {}  # function_call item id -> tool-call index
        self._args_seen: set[int] = set()
        self._refused = False
        self._done = False

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        for ev in self._sse.feed(chunk):
            self._handle(ev.event, ev.data, out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for ev in self._sse.close():
            self._handle(ev.event, ev.data, out)
        if not self._done:
            self._done = True
            out.append(StreamError(UpstreamUnreachable(f"{self._provider}: stream ended early")))
        return out

    def _handle(self, name: str, data: str, out: list[Event]) -> None:
        if self._done:
            return
        try:
            payload = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return  # a keep-alive or "[DONE]" line: not an event of this API
        if not isinstance(payload, dict):
            return
        kind = payload.get("type") or name
        if kind in _TERMINAL:
            self._done = True
            self._finish(kind, payload, out)
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            self._refused = self._refused or kind == "response.refusal.delta"
            if delta := payload.get("delta"):
                out.append(TextDelta(str(delta)))
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            if delta := payload.get("delta"):
                out.append(ThinkingDelta(str(delta), source=self._source, item_id=payload.get("item_id")))
        elif kind == "response.reasoning_summary_part.added" and _positive(payload.get("summary_index")):
            out.append(ThinkingDelta(_SUMMARY_SEPARATOR, source=self._source, item_id=payload.get("item_id")))
        elif kind == "response.output_item.added":
            self._start_item(_object(payload.get("item")), out)
        elif kind == "response.function_call_arguments.delta":
            self._arguments(payload.get("item_id"), payload.get("delta"), out)
        elif kind == "response.function_call_arguments.done":
            index = self._calls.get(str(payload.get("item_id")))
            if index is not None and index not in self._args_seen:
                self._arguments(payload.get("item_id"), payload.get("arguments"), out)
        elif kind == "response.output_item.done":
            self._end_item(_object(payload.get("item")), out)

    def _start_item(self, item: dict[str, Any], out: list[Event]) -> None:
        if item.get("type") != "function_call":
            return
        index = len(self._calls)
        self._calls[str(item.get("id") or f"#{index}")] = index
        out.append(ToolCallStart(index, str(item.get("call_id") or ""), str(item.get("name") or "")))
        if item.get("arguments"):
            self._arguments(item.get("id"), item["arguments"], out)

    def _arguments(self, item_id: Any, delta: Any, out: list[Event]) -> None:
        index = self._calls.get(str(item_id))
        if index is None or not delta:
            return
        self._args_seen.add(index)
        out.append(ToolCallDelta(index, str(delta)))

    def _end_item(self, item: dict[str, Any], out: list[Event]) -> None:
        kind = item.get("type")
        if kind == "reasoning" and item.get("encrypted_content"):
            out.append(ThinkingDelta(redacted=item["encrypted_content"], source=self._source, item_id=item.get("id")))
        elif kind == "function_call":
            index = self._calls.get(str(item.get("id")))
            if index is None:  # no output_item.added was seen: open the call now
                self._start_item(item, out)
                index = len(self._calls) - 1
            elif index not in self._args_seen and item.get("arguments"):
                self._arguments(item.get("id"), item["arguments"], out)
            out.append(ToolCallEnd(index))

    def _finish(self, kind: str, payload: dict[str, Any], out: list[Event]) -> None:
        if kind == "error":
            out.append(StreamError(error_from(self._provider, payload)))
            return
        response = _object(payload.get("response"))
        if kind == "response.failed":
            out.append(StreamError(error_from(self._provider, _object(response.get("error")))))
            return
        out.append(Finish(finish_reason(response, bool(self._calls), self._refused)))
        usage = usage_from(response.get("usage"))
        if usage is not None:
            out.append(UsageEvent(usage))


def finish_reason(response: dict[str, Any], has_calls: bool, refused: bool) -> FinishReason:
    """The canonical finish reason of a Response object's ``status`` and ``incomplete_details``."""
    status = response.get("status")
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    if status in ("failed", "cancelled"):
        return "error"
    if refused:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def usage_from(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details") or {}
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_tokens=int(details.get("cached_tokens") or 0),
        cache_write_tokens=int(details.get("cache_write_tokens") or 0),
        reasoning_tokens=int(reasoning),
    )


def error_from(provider_name: str, error: dict[str, Any]) -> UpstreamError:
    """An ``error`` event or a failed response's ``error`` object, with the status its code implies."""
    code = error.get("code")
    code = str(code) if code is not None else None
    message = str(error.get("message") or "the response failed without a message")
    type_ = error.get("type") if isinstance(error.get("type"), str) else None
    return UpstreamError(
        f"{provider_name}: {message}",
        status=_status_for(code, type_),
        type_=type_,
        code=code,
        param=error.get("param") if isinstance(error.get("param"), str) else None,
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _positive(value: Any) -> bool:
    return isinstance(value, int) and value > 0


def _status_for(code: str | None, type_: str | None) -> int:
    if code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[code]
    if type_ == "invalid_request_error":
        return 400
    if code and (code.startswith(_CLIENT_CODE_PREFIXES) or "_policy" in code or code.endswith("_mismatch")):
        return 400  # the request (prompt, image, policy, residency) was refused: retrying will not help
    return 500
