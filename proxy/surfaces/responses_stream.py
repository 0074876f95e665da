"""Canonical stream events → the OpenAI Responses event stream (:class:`ResponsesStreamEncoder`).

The stream is OpenAI's event sequence with ``sequence_number`` from 0:
``response.created``, ``response.in_progress``, per item ``output_item.added`` … ``output_item.done``
(with ``content_part``, ``output_text``, ``reasoning_summary_part`` / ``_text``,
``function_call_arguments`` and ``custom_tool_call_input`` events inside), then ``response.completed``
(``response.incomplete`` when the output limit cut it) with usage. A failure ends the stream with
``response.failed`` whose ``error.code`` is one Codex acts on (:func:`failure_code`).

Items are the ones :mod:`.responses_out` builds for a whole answer. A freeform tool's input is sent in
one ``custom_tool_call_input.delta`` when the call ends: until then it is still JSON-escaped inside the
function arguments the provider streams.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from providers.canonical import (
    Event,
    Finish,
    FinishReason,
    StreamError,
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
from providers.errors import SwitchboardError, UpstreamError

from .responses_in import Shape
from .responses_out import (
    call_item,
    call_signature_item,
    failure_code,
    message_item,
    new_id,
    reasoning_item,
    response_object,
)

__all__ = ["ResponsesStreamEncoder"]

_encode = msgspec.json.encode


@dataclass(slots=True)
class _Open:
    """An output item being streamed."""

    index: int
    item_id: str
    kind: str  # message | reasoning | call
    text: list[str] = field(default_factory=list)
    thinking: Thinking | None = None
    call: ToolCall | None = None
    part_open: bool = False


class ResponsesStreamEncoder:
    """Canonical events → Responses SSE bytes, one instance per response (a :class:`StreamEncoder`)."""

    def __init__(self, model: str, shape: Shape) -> None:
        self._model = model
        self._shape = shape
        self._id = new_id("resp")
        self._created = int(time.time())
        self._seq = 0
        self._started = False
        self._done = False
        self._items: list[dict[str, Any]] = []
        self._current: _Open | None = None  # the open message or reasoning item
        self._calls: dict[int, _Open] = {}
        self._reason: FinishReason | None = None
        self._usage: Usage | None = None

    def encode(self, events: Sequence[Event]) -> bytes:
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        for ev in events:
            if isinstance(ev, TextDelta):
                if ev.text:
                    self._text(ev.text, out)
            elif isinstance(ev, ThinkingDelta):
                self._thinking(ev, out)
            elif isinstance(ev, ToolCallStart):
                self._open_call(ev, out)
            elif isinstance(ev, ToolCallDelta):
                self._arguments(ev, out)
            elif isinstance(ev, ToolCallEnd):
                if (call := self._calls.pop(ev.index, None)) is not None:
                    self._close_call(call, out)
            elif isinstance(ev, UsageEvent):
                self._usage = ev.usage
            elif isinstance(ev, Finish):
                self._reason = ev.reason
            elif isinstance(ev, StreamError):
                out.append(self._failed(ev.error))
                break
        return b"".join(out)

    def finish(self, events: Sequence[Event]) -> bytes:
        head = self.encode(events)
        if self._done:
            return head
        out = [head]
        self._close_current(out)
        for index in sorted(self._calls):
            self._close_call(self._calls.pop(index), out)
        self._done = True
        reason = self._reason or "stop"
        body = response_object(
            self._id, self._model, self._shape, self._items, reason, self._usage, created=self._created
        )
        kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        out.append(self._event(kind, {"response": body}))
        return b"".join(out)

    def error(self, exc: Exception) -> bytes:
        if self._done:
            return b""
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        out.append(self._failed(exc))
        return b"".join(out)

    def usage(self) -> Usage | None:
        return self._usage

    # --- items --------------------------------------------------------------------------------

    def _start(self, out: list[bytes]) -> None:
        self._started = True
        body = response_object(self._id, self._model, self._shape, [], None, None, created=self._created)
        out.append(self._event("response.created", {"response": body}))
        out.append(self._event("response.in_progress", {"response": body}))

    def _open(self, kind: str, item: dict[str, Any], out: list[bytes]) -> _Open:
        state = _Open(len(self._items), item["id"], kind)
        self._items.append(item)
        out.append(self._event("response.output_item.added", {"output_index": state.index, "item": item}))
        return state

    def _done_item(self, state: _Open, item: dict[str, Any], out: list[bytes]) -> None:
        self._items[state.index] = item
        out.append(self._event("response.output_item.done", {"output_index": state.index, "item": item}))

    def _ref(self, state: _Open) -> dict[str, Any]:
        return {"item_id": state.item_id, "output_index": state.index}

    def _text(self, text: str, out: list[bytes]) -> None:
        cur = self._current
        if cur is None or cur.kind != "message":
            self._close_current(out)
            item_id = new_id("msg")
            cur = self._current = self._open("message", message_item(item_id, "", "in_progress"), out)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(self._event("response.content_part.added", {**self._ref(cur), "content_index": 0, "part": part}))
        cur.text.append(text)
        delta = {**self._ref(cur), "content_index": 0, "delta": text, "logprobs": []}
        out.append(self._event("response.output_text.delta", delta))

    def _thinking(self, ev: ThinkingDelta, out: list[bytes]) -> None:
        cur = self._current
        if cur is None or cur.kind != "reasoning":
            if not (ev.text or ev.signature or ev.redacted):
                return
            self._close_current(out)
            item = {"id": new_id("rs"), "type": "reasoning", "summary": []}
            cur = self._current = self._open("reasoning", item, out)
            cur.thinking = Thinking()
        thinking = cur.thinking
        assert thinking is not None
        thinking.source = ev.source or thinking.source
        thinking.item_id = ev.item_id or thinking.item_id
        if ev.text:
            if not cur.part_open:
                cur.part_open = True
                part = {"type": "summary_text", "text": ""}
                added = {**self._ref(cur), "summary_index": 0, "part": part}
                out.append(self._event("response.reasoning_summary_part.added", added))
            thinking.text += ev.text
            delta = {**self._ref(cur), "summary_index": 0, "delta": ev.text}
            out.append(self._event("response.reasoning_summary_text.delta", delta))
        if ev.signature or ev.redacted:
            thinking.signature = ev.signature or thinking.signature
            thinking.redacted = ev.redacted or thinking.redacted
            self._close_current(out)  # a signed block is complete; more thinking starts a new item

    def _close_current(self, out: list[bytes]) -> None:
        cur, self._current = self._current, None
        if cur is None:
            return
        ref = self._ref(cur)
        if cur.kind == "message":
            text = "".join(cur.text)
            item = message_item(cur.item_id, text)
            out.append(
                self._event("response.output_text.done", {**ref, "content_index": 0, "text": text, "logprobs": []})
            )
            part = item["content"][0]
            out.append(self._event("response.content_part.done", {**ref, "content_index": 0, "part": part}))
            self._done_item(cur, item, out)
            return
        thinking = cur.thinking or Thinking()
        if cur.part_open:
            sref = {**ref, "summary_index": 0}
            out.append(self._event("response.reasoning_summary_text.done", {**sref, "text": thinking.text}))
            part = {"type": "summary_text", "text": thinking.text}
            out.append(self._event("response.reasoning_summary_part.done", {**sref, "part": part}))
        self._done_item(cur, reasoning_item(thinking, self._shape, cur.item_id), out)

    def _open_call(self, ev: ToolCallStart, out: list[bytes]) -> None:
        self._close_current(out)
        if ev.signature and self._shape.encrypted:
            item = call_signature_item(ev.id, ev.signature, ev.signature_source, self._shape)
            state = self._open("reasoning", item, out)
            self._done_item(state, item, out)
        call = ToolCall(ev.id, ev.name, "", ev.signature, ev.signature_source)
        item_id = new_id("fc")
        state = self._open("call", call_item(call, item_id, self._shape, "in_progress"), out)
        state.call = call
        self._calls[ev.index] = state

    def _arguments(self, ev: ToolCallDelta, out: list[bytes]) -> None:
        state = self._calls.get(ev.index)
        if state is None or state.call is None or not ev.arguments:
            return
        state.call.arguments += ev.arguments
        if self._items[state.index]["type"] == "function_call":
            delta = {**self._ref(state), "delta": ev.arguments}
            out.append(self._event("response.function_call_arguments.delta", delta))
        # A freeform input is JSON-escaped inside the arguments until they are complete: sent whole at the end.

    def _close_call(self, state: _Open, out: list[bytes]) -> None:
        call = state.call
        assert call is not None
        call.arguments = call.arguments or "{}"
        item = call_item(call, state.item_id, self._shape)
        ref = self._ref(state)
        if item["type"] == "function_call":
            done = {**ref, "name": item["name"], "arguments": call.arguments}
            out.append(self._event("response.function_call_arguments.done", done))
        elif item["type"] == "custom_tool_call":
            if item["input"]:
                out.append(self._event("response.custom_tool_call_input.delta", {**ref, "delta": item["input"]}))
            out.append(self._event("response.custom_tool_call_input.done", {**ref, "input": item["input"]}))
        self._done_item(state, item, out)

    # --- framing ------------------------------------------------------------------------------

    def _failed(self, exc: Exception) -> bytes:
        self._done = True
        if isinstance(exc, SwitchboardError):
            err = exc
        else:
            err = UpstreamError(f"could not translate the provider's stream ({type(exc).__name__})", status=502)
        body = response_object(
            self._id, self._model, self._shape, self._items, None, self._usage, created=self._created
        )
        body["status"] = "failed"
        body["error"] = {"code": failure_code(err), "message": err.message}
        return self._event("response.failed", {"response": body})

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        payload = _encode({"type": kind, "sequence_number": self._seq, **fields})
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"
