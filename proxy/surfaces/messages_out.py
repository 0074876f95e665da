"""Canonical answers → Anthropic ``message`` objects and Anthropic's exact SSE event sequence.

The stream, as Anthropic sends it::

    message_start  (usage so far)  ping
    content_block_start  content_block_delta…  content_block_stop     one per block, indexes 0, 1, …
    message_delta  (stop_reason, cumulative usage)  message_stop
    error          in place of the rest, when the upstream fails after the stream began

Deltas are ``text_delta``, ``thinking_delta``, ``signature_delta`` and ``input_json_delta``.

Reasoning from a non-Anthropic API has no Anthropic signature, yet must come back on the next turn to
the service that issued it (an OpenAI encrypted reasoning item, a Gemini or Bedrock signature). It is
sent as a ``thinking`` block (``redacted_thinking`` when there is no text) whose ``signature`` (``data``)
is Switchboard's own wrapper (:func:`wrap_signature`: a prefix and base64url JSON of the issuer and
the opaque value); :func:`unwrap_signature` reads it back on the next request. A Gemini thought signature
that rides on a function call goes out as an empty thinking block just before its ``tool_use``.

Usage follows Anthropic's convention: ``input_tokens`` excludes the cache reads and writes, which have
their own fields (the canonical input includes them).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
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
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from providers.errors import SwitchboardError, UpstreamError

__all__ = [
    "MessageStreamEncoder",
    "Wrapped",
    "anthropic_error_type",
    "encode_response",
    "error_envelope",
    "new_message_id",
    "unwrap_signature",
    "wrap_signature",
]

log = logging.getLogger("switchboard")

_encode = msgspec.json.encode
_PREFIX = "sbx1."
_STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}
#: Anthropic's error types by HTTP status (its documented table; 503 is its "overloaded").
_TYPES_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_TYPES = frozenset(_TYPES_BY_STATUS.values()) | {"api_error"}


def new_message_id() -> str:
    return "msg_" + os.urandom(12).hex()


# --- signatures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wrapped:
    source: str | None
    signature: str | None = None
    redacted: str | None = None
    item_id: str | None = None
    #: The tool call (id) a Gemini thought signature belongs to.
    tool_call: str | None = None


class _WrappedJSON(msgspec.Struct, omit_defaults=True):
    s: str | None = None
    g: str | None = None
    r: str | None = None
    i: str | None = None
    t: str | None = None


_UNWRAP = msgspec.json.Decoder(_WrappedJSON)


def wrap_signature(w: Wrapped) -> str:
    raw = _encode(_WrappedJSON(w.source, w.signature, w.redacted, w.item_id, w.tool_call))
    return _PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unwrap_signature(value: str) -> Wrapped | None:
    """What :func:`wrap_signature` wrapped (None: not a Switchboard wrapper, e.g. Anthropic's own)."""
    if not value.startswith(_PREFIX):
        return None
    text = value[len(_PREFIX) :]
    try:
        w = _UNWRAP.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return None
    return Wrapped(w.s, w.g, w.r, w.i, w.t)


def _thinking_blocks(t: Thinking) -> dict[str, Any]:
    opaque = wrap_signature(Wrapped(t.source, t.signature, t.redacted, t.item_id)) if t.signature or t.redacted else ""
    if not t.text and t.redacted:
        return {"type": "redacted_thinking", "data": opaque}
    return {"type": "thinking", "thinking": t.text, "signature": opaque}


def _tool_signature_block(call_id: str, signature: str, source: str | None) -> dict[str, Any]:
    return {
        "type": "thinking",
        "thinking": "",
        "signature": wrap_signature(Wrapped(source, signature, tool_call=call_id)),
    }


# --- whole answers ----------------------------------------------------------------------------


def encode_response(resp: Response, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for block in resp.content:
        if isinstance(block, Text):
            if block.text:
                content.append({"type": "text", "text": block.text})
        elif isinstance(block, Thinking):
            content.append(_thinking_blocks(block))
        elif isinstance(block, ToolCall):
            if block.signature:
                content.append(_tool_signature_block(block.id, block.signature, block.signature_source))
            content.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": _tool_input(block.arguments)}
            )
    reason = resp.finish_reason
    if reason == "stop" and any(isinstance(b, ToolCall) for b in resp.content):
        reason = "tool_calls"
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": resp.model or model,
        "content": content,
        "stop_reason": _STOP_REASONS[reason],
        "stop_sequence": None,
        "usage": usage_dict(resp.usage or Usage()),
    }


def _tool_input(arguments: str) -> Any:
    try:
        value = msgspec.json.decode(arguments) if arguments.strip() else {}
    except msgspec.DecodeError:
        return {"_raw": arguments}  # the model wrote invalid JSON; the client still sees what it was
    return value if isinstance(value, dict) else {"value": value}


def usage_dict(u: Usage) -> dict[str, int]:
    return {
        "input_tokens": max(u.input_tokens - u.cache_read_tokens - u.cache_write_tokens, 0),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    }


# --- errors -----------------------------------------------------------------------------------


def anthropic_error_type(exc: SwitchboardError) -> str:
    # "invalid_request_error" is also OpenAI's catch-all (a 404 unknown model carries it): the status decides.
    if exc.type in _ANTHROPIC_TYPES and exc.type != "invalid_request_error":
        return exc.type
    if exc.status in _TYPES_BY_STATUS:
        return _TYPES_BY_STATUS[exc.status]
    return "invalid_request_error" if 400 <= exc.status < 500 else "api_error"


def error_envelope(exc: SwitchboardError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_error_type(exc), "message": exc.message}}


def _event(name: bytes, data: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + _encode(data) + b"\n\n"


# --- streams ----------------------------------------------------------------------------------


class MessageStreamEncoder:
    """Canonical events → Anthropic's SSE events, one instance per response (see the module docstring)."""

    splices_text = False

    def __init__(self, model: str, include_usage: bool = True) -> None:
        self._model = model
        self._started = False
        self._done = False
        #: The open block: "text", "thinking", "tool" or None; its index; the canonical tool index.
        self._open: str | None = None
        self._index = -1
        self._tool = -1
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._has_calls = False

    def encode(self, events: Sequence[Event]) -> bytes:
        out: list[bytes] = []
        for ev in events:
            if isinstance(ev, StreamError):
                out.append(self._error(ev.error))
                break
            if isinstance(ev, UsageEvent):
                self._usage = ev.usage
            elif isinstance(ev, Finish):
                self._finish = ev.reason
            else:
                self._start(out)
                self._content(ev, out)
        return b"".join(out)

    def finish(self, events: Sequence[Event]) -> bytes:
        head = self.encode(events)
        if self._done:
            return head
        self._done = True
        out = [head]
        self._start(out)
        self._close(out)
        reason = self._finish or "stop"
        if reason == "stop" and self._has_calls:
            reason = "tool_calls"
        usage = usage_dict(self._usage or Usage())
        delta = {"stop_reason": _STOP_REASONS[reason], "stop_sequence": None}
        out.append(_event(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(_event(b"message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def error(self, exc: Exception) -> bytes:
        return b"" if self._done else self._error(exc)

    def usage(self) -> Usage | None:
        return self._usage

    def _error(self, exc: Exception) -> bytes:
        self._done = True
        err = (
            exc
            if isinstance(exc, SwitchboardError)
            else UpstreamError(f"could not translate the provider's stream ({type(exc).__name__})", status=502)
        )
        return _event(b"error", error_envelope(err))

    def _start(self, out: list[bytes]) -> None:
        if self._started:
            return
        self._started = True
        message: dict[str, Any] = {
            "id": new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(_event(b"message_start", {"type": "message_start", "message": message}))
        out.append(_event(b"ping", {"type": "ping"}))

    def _content(self, ev: Event, out: list[bytes]) -> None:
        if isinstance(ev, TextDelta):
            if not ev.text:
                return
            if self._open != "text":
                self._open_block("text", {"type": "text", "text": ""}, out)
            self._delta({"type": "text_delta", "text": ev.text}, out)
        elif isinstance(ev, ThinkingDelta):
            self._thinking(ev, out)
        elif isinstance(ev, ToolCallStart):
            self._has_calls = True
            if ev.signature:
                self._open_block("thinking", _tool_signature_block(ev.id, ev.signature, ev.signature_source), out)
            self._open_block("tool", {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}}, out)
            self._tool = ev.index
        elif isinstance(ev, ToolCallDelta):
            if ev.arguments and self._open == "tool" and self._tool == ev.index:
                self._delta({"type": "input_json_delta", "partial_json": ev.arguments}, out)
            elif ev.arguments:
                # Anthropic's blocks are sequential; an upstream interleaving its calls' arguments loses these.
                log.warning("tool call %d's arguments arrived after its block closed; dropped", ev.index)
        elif isinstance(ev, ToolCallEnd) and self._open == "tool" and self._tool == ev.index:
            self._close(out)

    def _thinking(self, ev: ThinkingDelta, out: list[bytes]) -> None:
        opaque = (
            wrap_signature(Wrapped(ev.source, ev.signature, ev.redacted, ev.item_id))
            if (ev.signature or ev.redacted)
            else None
        )
        if ev.redacted and not ev.text and self._open != "thinking":
            self._open_block("redacted", {"type": "redacted_thinking", "data": opaque}, out)
            self._close(out)
            return
        if self._open != "thinking":
            self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""}, out)
        if ev.text:
            self._delta({"type": "thinking_delta", "thinking": ev.text}, out)
        if opaque is not None:
            self._delta({"type": "signature_delta", "signature": opaque}, out)
            self._close(out)  # a signature ends its block; more thinking opens a new one

    def _open_block(self, kind: str, block: dict[str, Any], out: list[bytes]) -> None:
        self._close(out)
        self._index += 1
        self._open = kind
        out.append(
            _event(
                b"content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
            )
        )

    def _delta(self, delta: dict[str, Any], out: list[bytes]) -> None:
        out.append(
            _event(b"content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})
        )

    def _close(self, out: list[bytes]) -> None:
        if self._open is None:
            return
        self._open = None
        out.append(_event(b"content_block_stop", {"type": "content_block_stop", "index": self._index}))
