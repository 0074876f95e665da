"""Canonical answers → OpenAI ``chat.completion`` objects and ``chat.completion.chunk`` streams.

The chunk stream has the exact OpenAI shape: the first chunk carries ``role``; tool-call deltas carry
``index``/``id``/``function.name`` first, then argument fragments; one final chunk with ``finish_reason``;
a usage chunk with empty ``choices`` when ``stream_options.include_usage`` was set; then ``[DONE]``.

Thinking goes out as ``reasoning_content`` (text, streamed as deltas) plus, once a block is complete,
``thinking_blocks`` carrying the provider's signature or opaque data, so a client that sends the assistant
message back unchanged keeps multi-turn reasoning intact. A Gemini thought signature rides on its tool
call as ``thought_signature``.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from providers.canonical import (
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
    ToolCallStart,
    Usage,
    UsageEvent,
)
from providers.errors import SwitchboardError, UpstreamError
from providers.sse import TextRun

from ..translated import SplicingEncoder

__all__ = ["ChunkEncoder", "encode_response", "new_completion_id"]

_DONE = b"data: [DONE]\n\n"
_encode = msgspec.json.encode
#: A content delta chunk's bytes around the JSON string of its text (the keys in _chunk's order).
_CONTENT_OPEN = b'"choices":[{"index":0,"delta":{"content":'
_CONTENT_CLOSE = b'},"logprobs":null,"finish_reason":null}]}\n\n'
#: The first content delta chunk's (it carries the role).
_RUN_CLOSE = b'"' + _CONTENT_CLOSE
_HEAD = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
_FIRST_CONTENT_OPEN = b'"choices":[{"index":0,"delta":{"role":"assistant","content":'
#: The finish chunk's bytes around the JSON string of its reason.
_FINISH_OPEN = b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":'
_FINISH_CLOSE = b"}]}\n\n"


def new_completion_id() -> str:
    # 24 hex digits, the length OpenAI's ids have: this process's random prefix and a counter. An id need
    # only be unique, not secret; a random draw per response touched the generator's 2.5 kB state on
    # every request (~1 us in the server).
    return f"chatcmpl-{_PROCESS}{next(_COMPLETION_IDS):012x}"


_PROCESS = secrets.token_hex(6)
_COMPLETION_IDS = itertools.count(1)


def encode_response(resp: Response, model: str) -> dict[str, Any]:
    texts = [b.text for b in resp.content if isinstance(b, Text)]
    thinking = [b for b in resp.content if isinstance(b, Thinking)]
    calls = [b for b in resp.content if isinstance(b, ToolCall)]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if thinking:
        message["reasoning_content"] = "".join(t.text for t in thinking)
        blocks = [_thinking_block(t) for t in thinking if t.signature or t.redacted]
        if blocks:
            message["thinking_blocks"] = blocks
    if calls:
        message["tool_calls"] = [_tool_call(i, c, with_index=False) for i, c in enumerate(calls)]
    out: dict[str, Any] = {
        "id": resp.id or new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": resp.model or model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": resp.finish_reason}],
    }
    if resp.usage is not None:
        out["usage"] = _usage(resp.usage)
    return out


def _thinking_block(t: Thinking) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "redacted_thinking" if t.redacted and not t.text else "thinking",
        "thinking": t.text,
    }
    if t.signature:
        block["signature"] = t.signature
    if t.redacted:
        block["data"] = t.redacted
    if t.source:
        block["provider"] = t.source
    if t.item_id:
        block["id"] = t.item_id
    return block


def _tool_call(index: int, call: ToolCall, *, with_index: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    if with_index:
        out = {"index": index, **out}
    if call.signature:
        out["thought_signature"] = call.signature
        if call.signature_source:
            # Who signed it: the next turn replays the signature only to that provider.
            out["thought_signature_provider"] = call.signature_source
    return out


def _usage(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


class ChunkEncoder(SplicingEncoder):
    """Turns canonical events (and spliced text runs) into SSE bytes, one instance per response."""

    __slots__ = (
        "_content_open",
        "_created",
        "_done",
        "_finish",
        "_has_calls",
        "_head",
        "_id",
        "_include_usage",
        "_model",
        "_run_open",
        "_run_sep",
        "_started",
        "_thinking",
        "_usage",
    )

    def __init__(self, model: str, include_usage: bool) -> None:
        self._id = new_completion_id()
        self._created = int(time.time())
        self._model = model
        self._include_usage = include_usage
        self._started = False
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._has_calls = False
        #: The reasoning block being streamed (made when one starts: most answers have none).
        self._thinking: Thinking | None = None
        self._done = False
        # Every chunk starts with the same id/object/created/model: encoded once, not per delta (the id is
        # hex digits, the time a number; only the model needs JSON's escaping).
        self._head = _HEAD % (self._id.encode(), self._created, msgspec.json.encode(model))
        self._content_open = self._head + _CONTENT_OPEN
        # A text run is one join: the texts with the end of one chunk and the start of the next between.
        self._run_open = self._content_open + b'"'
        self._run_sep = _RUN_CLOSE + self._run_open

    def encode(self, events: Sequence[Event | TextRun]) -> bytes:
        """All of one upstream read's events as one piece of bytes (one send for the whole batch).

        A :class:`TextRun` (text deltas left as JSON by the decoder) is framed around its texts as they are.
        """
        out: list[bytes] = []
        content_open = self._content_open
        for ev in events:
            if isinstance(ev, TextRun):
                texts = ev.texts
                if not self._started:
                    # The first chunk also carries the role.
                    self._started = True
                    out += (self._head, _FIRST_CONTENT_OPEN, b'"', texts[0], b'"', _CONTENT_CLOSE)
                    texts = texts[1:]
                    if not texts:
                        continue
                out += (self._run_open, self._run_sep.join(texts), _RUN_CLOSE)
                continue
            if type(ev) is TextDelta:
                # The bulk of a stream: a content delta, framed without building its dict (and without
                # concatenating: the pieces are copied once, by the join).
                if ev.text:
                    if self._started:
                        out += (content_open, _encode(ev.text), _CONTENT_CLOSE)
                    else:
                        self._started = True
                        out += (self._head, _FIRST_CONTENT_OPEN, _encode(ev.text), _CONTENT_CLOSE)
                continue
            if isinstance(ev, StreamError):
                out.append(self._error(ev.error))
                break
            delta = self._delta(ev)
            if delta is not None:
                out.append(self._chunk(delta))
        return b"".join(out)

    def finish(self, events: Sequence[Event | TextRun]) -> bytes:
        """The last bytes: pending events, the finish chunk, the usage chunk and ``[DONE]``."""
        head = self.encode(events)
        if self._done:
            return head
        self._done = True
        parts = [head]
        if not self._started:
            parts.append(self._chunk({"role": "assistant", "content": ""}))
        reason = self._finish or ("tool_calls" if self._has_calls else "stop")
        # The finish chunk framed as _frame would write {"choices": [{... "finish_reason": reason}]}.
        parts += (self._head, _FINISH_OPEN, _encode(reason), _FINISH_CLOSE)
        if self._include_usage:
            parts.append(self._frame({"choices": [], "usage": _usage(self._usage or Usage())}))
        parts.append(_DONE)
        return b"".join(parts)

    def error(self, exc: Exception) -> bytes:
        return b"" if self._done else self._error(exc)

    def usage(self) -> Usage | None:
        """The usage the stream reported (None when it ended before its usage event)."""
        return self._usage

    def _error(self, exc: Exception) -> bytes:
        self._done = True
        if isinstance(exc, SwitchboardError):
            err = exc
        else:
            err = UpstreamError(f"could not translate the provider's stream ({type(exc).__name__})", status=502)
        return b"data: " + msgspec.json.encode(err.envelope()) + b"\n\n" + _DONE

    def _delta(self, ev: Event) -> dict[str, Any] | None:
        if isinstance(ev, TextDelta):
            return {"content": ev.text} if ev.text else None
        if isinstance(ev, ThinkingDelta):
            return self._thinking_delta(ev)
        if isinstance(ev, ToolCallStart):
            self._has_calls = True
            call = ToolCall(ev.id, ev.name, "", ev.signature, ev.signature_source)
            return {"tool_calls": [_tool_call(ev.index, call, with_index=True)]}
        if isinstance(ev, ToolCallDelta):
            return (
                {"tool_calls": [{"index": ev.index, "function": {"arguments": ev.arguments}}]} if ev.arguments else None
            )
        if isinstance(ev, Finish):
            self._finish = ev.reason
        elif isinstance(ev, UsageEvent):
            self._usage = ev.usage
        return None

    def _thinking_delta(self, ev: ThinkingDelta) -> dict[str, Any] | None:
        t = self._thinking
        if t is None:
            t = self._thinking = Thinking()
        t.text += ev.text
        t.source = ev.source or t.source
        t.item_id = ev.item_id or t.item_id
        delta: dict[str, Any] = {"reasoning_content": ev.text} if ev.text else {}
        if ev.signature or ev.redacted:
            t.signature = ev.signature or t.signature
            t.redacted = ev.redacted or t.redacted
            delta["thinking_blocks"] = [_thinking_block(t)]
            self._thinking = None  # the block is complete; a later one starts fresh
        return delta or None

    def _chunk(self, delta: dict[str, Any]) -> bytes:
        if not self._started:
            self._started = True
            delta = {"role": "assistant", **delta}
            if "content" not in delta:
                delta["content"] = ""
        return self._frame({"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]})

    def _frame(self, body: dict[str, Any]) -> bytes:
        return self._head + _encode(body)[1:] + b"\n\n"
