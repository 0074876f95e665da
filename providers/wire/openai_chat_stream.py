"""Decoding side of wire API ``openai-completions``: ``chat.completion`` usage, finish reasons, chunk streams.

The stream is ``data: {chat.completion.chunk}`` events ended by ``data: [DONE]``. Mapping to canonical
events:

* ``delta.content`` → :class:`TextDelta`; ``delta.refusal`` → :class:`TextDelta` too, finishing as
  ``content_filter``;
* ``delta.reasoning_content`` (DeepSeek, vLLM, Qwen, Z.ai) / ``delta.reasoning`` (OpenRouter, Ollama, Groq)
  → :class:`ThinkingDelta` without a signature (these APIs have none);
* ``delta.tool_calls[]`` → :class:`ToolCallStart` when a call first appears (by ``index``, or by a new
  ``id`` at an index already used: some servers number every call 0), then :class:`ToolCallDelta`;
  every open call gets its :class:`ToolCallEnd` at the chunk carrying ``finish_reason``;
* ``usage`` (any chunk; the last one wins, Groq's ``x_groq.usage`` too) and the finish reason are sent
  at ``[DONE]`` as :class:`Finish` then :class:`UsageEvent`;
* ``{"error": ...}`` (a chunk or an ``event: error``) → :class:`StreamError`; a stream without
  ``[DONE]`` → :class:`StreamError` from :meth:`ChatStreamDecoder.close`.
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
from .openai_completions import chat_usage
from .openai_responses_stream import error_from

__all__ = ["SOURCE", "ChatStreamDecoder", "arguments_text", "as_dict", "finish_reason", "stream_error", "usage_from"]

#: The wire API name, the first half of the ``Thinking.source`` issuer tag (:func:`.replay.issuer`).
SOURCE = "openai-completions"

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "end_turn": "stop",
    "eos": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "error": "error",
}


class ChatStreamDecoder:
    """Fed raw upstream bytes (split anywhere); returns canonical events (see the module docstring)."""

    def __init__(self, provider_name: str, source: str) -> None:
        self._provider = provider_name
        self._source = source
        self._sse = SSEParser()
        #: upstream tool-call index → (canonical index, call id) of the call open at that index.
        self._calls: dict[int, tuple[int, str]] = {}
        self._open: list[int] = []  # canonical indexes not yet ended
        self._count = 0
        self._reason: FinishReason | None = None
        self._refused = False
        self._usage: Usage | None = None
        self._done = False

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        for ev in self._sse.feed(chunk):
            self._handle(ev.data, out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for ev in self._sse.close():
            self._handle(ev.data, out)
        if not self._done:
            self._done = True
            out.append(StreamError(UpstreamUnreachable(f"{self._provider}: stream ended early (no [DONE])")))
        return out

    def _handle(self, data: str, out: list[Event]) -> None:
        if self._done:
            return
        if data.strip() == "[DONE]":
            self._end(out)
            return
        try:
            chunk = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return  # a keep-alive or a comment some gateways send as data: not a chunk
        if not isinstance(chunk, dict):
            return
        if chunk.get("error") is not None:
            self._done = True
            out.append(StreamError(stream_error(self._provider, chunk["error"])))
            return
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and not choice.get("index"):  # n is 1: only choice 0 exists
                self._choice(choice, out)
        usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
        if (decoded := usage_from(usage)) is not None:
            self._usage = decoded

    def _choice(self, choice: dict[str, Any], out: list[Event]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str) and thought:
                out.append(ThinkingDelta(thought, source=self._source))
            if isinstance(text := delta.get("content"), str) and text:
                out.append(TextDelta(text))
            if isinstance(refusal := delta.get("refusal"), str) and refusal:
                self._refused = True
                out.append(TextDelta(refusal))
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_call(call, out)
        if reason := choice.get("finish_reason"):
            self._reason = finish_reason(reason, bool(self._count), self._refused)
            self._end_calls(out)

    def _tool_call(self, call: dict[str, Any], out: list[Event]) -> None:
        position = call.get("index")
        position = position if isinstance(position, int) else len(self._calls)
        fn = as_dict(call.get("function"))
        call_id = call.get("id")
        known = self._calls.get(position)
        if known is None or (call_id and call_id != known[1]):
            index = self._count
            self._count += 1
            call_id = str(call_id or f"call_{index}")  # a tool_use block downstream needs an id
            self._calls[position] = (index, call_id)
            self._open.append(index)
            out.append(ToolCallStart(index, call_id, str(fn.get("name") or "")))
        else:
            index = known[0]
        if args := arguments_text(fn.get("arguments")):
            out.append(ToolCallDelta(index, args))

    def _end_calls(self, out: list[Event]) -> None:
        out.extend(ToolCallEnd(i) for i in self._open)
        self._open.clear()

    def _end(self, out: list[Event]) -> None:
        self._done = True
        self._end_calls(out)
        out.append(Finish(self._reason or finish_reason(None, bool(self._count), self._refused)))
        if self._usage is not None:
            out.append(UsageEvent(self._usage))


def finish_reason(reason: Any, has_calls: bool, refused: bool = False) -> FinishReason:
    """The canonical reason for a chat ``finish_reason`` (servers that say ``stop`` after tool calls included)."""
    mapped = _FINISH.get(str(reason), "stop")
    if mapped == "stop" and refused:
        return "content_filter"
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def arguments_text(value: Any) -> str:
    """Tool-call arguments as JSON text (a few servers send an object instead of the string)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def stream_error(provider_name: str, error: Any) -> UpstreamError:
    """An in-stream ``error`` value as an :class:`UpstreamError` with the status its code implies."""
    if isinstance(error, dict):
        return error_from(provider_name, error)
    return UpstreamError(f"{provider_name}: {error}", status=502)


def usage_from(usage: Any) -> Usage | None:
    """A chat ``usage`` object in the canonical convention (None: absent): the one reading of every
    dialect, :func:`providers.wire.openai_completions.chat_usage`."""
    if not isinstance(usage, dict):
        return None
    return chat_usage(msgspec.json.encode(usage))


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (servers differ in what they leave null)."""
    return value if isinstance(value, dict) else {}


def _n(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and value > 0 else 0
