"""The answer side of the ``anthropic-messages`` wire API: message JSON, SSE streams, error bodies.

Used through :data:`providers.wire.anthropic_messages.API`. Anthropic streams named SSE events::

    message_start                   the message shell with input/cache usage
    content_block_start             text | thinking | redacted_thinking | tool_use (one index per block)
    ping                            keep-alive, any time
    content_block_delta             text_delta | thinking_delta | signature_delta | input_json_delta
    content_block_stop
    message_delta                   stop_reason and cumulative usage
    message_stop                    the end; a stream without it was cut short
    error                           an error after the stream started (e.g. overloaded_error)

Token counts follow the canonical (OpenAI) convention: input tokens include cache reads and writes.

Blocks of hosted tools Anthropic ran itself (``server_tool_use`` with its ``input_json_delta``,
``web_search_tool_result``) are skipped, as are ``citations`` and ``citations_delta``: the client did not
call them and cannot run them, so only the text that cites them comes through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import msgspec

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
from ..sse import SSEParser, TextRun, is_json_text, raw_event
from .base import SplicingDecoder
from .openai_completions import upstream_error as _openai_style_error

__all__ = ["NAME", "MessageStreamDecoder", "decode_message", "upstream_error"]

NAME = "anthropic-messages"

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
#: Statuses of the error types Anthropic reports inside a stream (and in bodies, with the HTTP status).
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 503,
}


def decode_message(body: bytes, provider: str, source: str = NAME) -> Response:
    """A non-streamed Anthropic ``message`` object as a canonical :class:`Response`; its thinking is tagged
    as issued by ``source`` (see :mod:`providers.wire.replay`)."""
    try:
        msg = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamError(f"{provider}: the answer is not valid JSON ({exc})", status=502) from exc
    if not isinstance(msg, dict) or msg.get("type") == "error":
        raise _error_from_body(provider, msg, 502)
    content: list[Block] = []
    for block in msg.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            content.append(Text(block.get("text", "")))
        elif kind == "thinking":
            content.append(Thinking(block.get("thinking", ""), signature=block.get("signature") or None, source=source))
        elif kind == "redacted_thinking":
            content.append(Thinking(redacted=block.get("data"), source=source))
        elif kind == "tool_use":
            arguments = msgspec.json.encode(block.get("input") or {}).decode()
            content.append(ToolCall(block.get("id", ""), block.get("name", ""), arguments))
    return Response(
        id=str(msg.get("id", "")),
        model=str(msg.get("model", "")),
        content=content,
        finish_reason=_map_stop_reason(msg.get("stop_reason")),
        usage=_convert_usage(msg.get("usage") or {}),
    )


def upstream_error(provider: str, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
    """An error answer: Anthropic's message and type; 529 overloaded becomes 503; retry-after is kept."""
    err = _openai_style_error(provider, status, body, headers)
    if status == 529:
        err.status = 503
        if err.type == UpstreamError.type:  # no type in the body
            err.type = "overloaded_error"
    return err


class MessageStreamDecoder(SplicingDecoder):
    """Anthropic SSE bytes (split anywhere) → canonical events (or, :meth:`feed_spliced`, text runs too)."""

    __slots__ = (
        "_blocks",
        "_done",
        "_finish",
        "_next_tool",
        "_parser",
        "_provider",
        "_source",
        "_text_index",
        "_usage",
    )

    def __init__(self, provider: str, source: str = NAME) -> None:
        self._provider = provider
        #: Who issued the thinking signatures this stream carries (see providers.wire.replay).
        self._source = source
        self._parser = SSEParser()
        #: Anthropic block index → our tool index (tool_use blocks) or -1 (other blocks).
        self._blocks: dict[int, int] = {}
        self._next_tool = 0
        self._usage: dict[str, Any] = {}
        self._finish: FinishReason | None = None
        self._done = False
        #: The index of the latest text block: feed_spliced looks for runs of its deltas.
        self._text_index = 0

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        region = self._parser.feed_complete(chunk)
        if region is None:
            self._handle_pairs(chunk, out)
        elif region and not self._done:
            self._handle_blocks(region, out)
        return out

    def feed_spliced(self, chunk: bytes) -> list[Event | TextRun]:
        """:meth:`feed`, with runs of consecutive plain text deltas given as a :class:`TextRun` of their JSON
        text, not decoded: an encoder that writes JSON splices them in as they are.

        A run is found with one split on what lies between two text deltas of the open text block
        (the end of one, the event header of the next): the pieces between are the texts, each checked with
        :func:`providers.sse.is_json_text`. What is not such a piece (the other events, a text with escapes)
        is decoded as :meth:`feed` does, from exactly its own bytes.
        """
        out: list[Event | TextRun] = []
        region = self._parser.feed_complete(chunk)
        if region is None:
            self._handle_pairs(chunk, out)
            return out
        if self._done or not region:
            return out
        marker, split = _run_marker(self._text_index)
        parts = split(b"\n\n" + region)
        if len(parts) < 3:  # no two text deltas in a row
            self._handle_blocks(region, out)
            return out
        # region = parts[0] + marker + parts[1] + marker + ... : each piece, framed by its share of the
        # markers around it, is a run of whole events.
        head = marker[3:]
        if self._handle_blocks(parts[0] + b'"}}', out):
            return out
        texts = parts[1:-1]
        joined = b"".join(texts)
        # All at once (a character cut in two is valid UTF-8 joined only: then each on its own).
        if all(texts) and is_json_text(joined) and (joined.isascii() or all(map(is_json_text, texts))):
            out.append(TextRun(texts))
        else:  # some piece is not one plain text delta: those go the general way
            run: list[bytes] = []
            for text in texts:
                if text and is_json_text(text):
                    run.append(text)
                    continue
                if run:
                    out.append(TextRun(run))
                    run = []
                if self._handle_blocks(head + text + b'"}}', out):
                    return out
            if run:
                out.append(TextRun(run))
        self._handle_blocks(head + parts[-1], out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for sse in self._parser.close():
            if not self._done and _is_json(sse.data):  # else: the stream broke off inside this event
                self._handle(sse.event, sse.data, out)
        if not self._done:
            self._done = True
            out.append(
                StreamError(UpstreamUnreachable(f"{self._provider}: stream ended early (no message_stop event)"))
            )
        return out

    def _handle_pairs(self, chunk: bytes, out: _Sink) -> None:
        # CR line ends or an event cut inside its lines: the parser's general rules (rare).
        pairs = self._parser.feed_raw(chunk)  # eager: the parser consumes the chunk even when done
        for name, data in pairs:
            if self._done:
                return
            self._handle(name, data, out)

    def _handle_blocks(self, data: bytes, out: _Sink) -> bool:
        """Whole events in their SSE bytes, blank lines between them; True once the stream is over."""
        for block in data.split(b"\n\n"):
            nl = block.find(b"\n")
            if (
                nl > 7
                and block.startswith(b"data: ", nl + 1)
                and block.startswith(b"event: ")
                and block.find(b"\n", nl + 1) < 0
            ):
                # raw_event's usual case (one event line, one data line) read in place: the event's JSON
                # says what it is, so its name is read only when the event takes the general path.
                payload = block[nl + 7 :]
                if not self._dispatch(payload, out):
                    self._handle_general(block[7:nl].decode("utf-8", "replace"), payload, out)
            else:
                pair = raw_event(block)
                if pair is None:
                    continue
                self._handle(pair[0], pair[1], out)
            if self._done:
                return True
        return False

    def _handle(self, name: str, data: bytes | str, out: _Sink) -> None:
        if not self._dispatch(data, out):
            self._handle_general(name, data, out)

    def _dispatch(self, data: bytes | str, out: _Sink) -> bool:
        """An event of the usual shape, decoded into its Struct (one typed decode, no dicts); False for
        anything else (an error event, an unknown type, a field of another type), which the general path
        then reads exactly as before. The event's type is its "type", not its SSE name."""
        try:
            ev = _EVENT_DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        kind = type(ev)
        if kind is _BlockDelta:
            return self._on_block_delta(ev, out)
        if kind is _Ping:
            pass
        elif kind is _BlockStart:
            self._start_block(ev.index, ev.content_block, out)
        elif kind is _BlockStop:
            self._stop_block(ev.index, out)
        elif kind is _MessageStart:
            if ev.message is not None:
                self._merge_usage(ev.message.usage)
        elif kind is _MessageDelta:
            self._merge_usage(ev.usage)
            self._on_stop_reason(ev.delta.stop_reason if ev.delta is not None else None, out)
        else:
            self._on_message_stop(out)
        return True

    def _handle_general(self, name: str, data: bytes | str, out: _Sink) -> None:
        try:
            payload = msgspec.json.decode(data)
        except msgspec.DecodeError:
            self._fail(UpstreamError(f"{self._provider}: invalid JSON in {name} stream event", status=502), out)
            return
        if not isinstance(payload, dict):
            return
        kind = payload.get("type", name)
        if kind == "content_block_delta":
            self._on_delta(payload, out)
        elif kind == "content_block_start":
            self._start_block(payload.get("index", len(self._blocks)), payload.get("content_block") or {}, out)
        elif kind == "content_block_stop":
            self._stop_block(payload.get("index", -1), out)
        elif kind == "message_start":
            self._merge_usage((payload.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self._merge_usage(payload.get("usage"))
            self._on_stop_reason((payload.get("delta") or {}).get("stop_reason"), out)
        elif kind == "message_stop":
            self._on_message_stop(out)
        elif kind == "error":
            self._fail(_error_from_body(self._provider, payload, 500), out)

    def _stop_block(self, index: Any, out: _Sink) -> None:
        tool = self._blocks.get(index, -1)
        if tool >= 0:
            out.append(ToolCallEnd(tool))

    def _on_stop_reason(self, reason: Any, out: _Sink) -> None:
        if reason is not None and self._finish is None:
            self._finish = _map_stop_reason(reason)
            out.append(Finish(self._finish))

    def _on_message_stop(self, out: _Sink) -> None:
        if self._finish is None:
            out.append(Finish("stop"))
        out.append(UsageEvent(_convert_usage(self._usage)))
        self._done = True

    def _start_block(self, index: Any, block: dict[str, Any], out: _Sink) -> None:
        kind = block.get("type")
        self._blocks[index] = -1
        if kind == "text" and isinstance(index, int):
            self._text_index = index
        if kind == "text" and block.get("text"):
            out.append(TextDelta(block["text"]))
        elif kind == "thinking" and (block.get("thinking") or block.get("signature")):
            out.append(
                ThinkingDelta(block.get("thinking", ""), signature=block.get("signature") or None, source=self._source)
            )
        elif kind == "redacted_thinking":
            out.append(ThinkingDelta(redacted=block.get("data"), source=self._source))
        elif kind == "tool_use":
            tool = self._blocks[index] = self._next_tool
            self._next_tool += 1
            out.append(ToolCallStart(tool, block.get("id", ""), block.get("name", "")))
            if block.get("input"):  # some compatible servers send the whole input here, not as deltas
                out.append(ToolCallDelta(tool, msgspec.json.encode(block["input"]).decode()))

    def _on_block_delta(self, ev: _BlockDelta, out: _Sink) -> bool:
        """A delta of the usual shape, decoded into a Struct; False sends the event down the general path."""
        delta = ev.delta
        kind = delta.type
        if kind == "text_delta":
            if delta.text:
                out.append(TextDelta(delta.text))
        elif kind == "thinking_delta":
            if delta.thinking:
                out.append(ThinkingDelta(delta.thinking, source=self._source))
        elif kind == "input_json_delta":
            tool = self._blocks.get(ev.index, -1)
            if tool >= 0 and delta.partial_json:
                out.append(ToolCallDelta(tool, delta.partial_json))
        else:
            return False
        return True

    def _on_delta(self, payload: dict[str, Any], out: _Sink) -> None:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            if delta.get("text"):
                out.append(TextDelta(delta["text"]))
        elif kind == "thinking_delta":
            if delta.get("thinking"):
                out.append(ThinkingDelta(delta["thinking"], source=self._source))
        elif kind == "signature_delta":
            out.append(ThinkingDelta(signature=delta.get("signature"), source=self._source))
        elif kind == "input_json_delta":
            tool = self._blocks.get(payload.get("index", -1), -1)
            if tool >= 0 and delta.get("partial_json"):
                out.append(ToolCallDelta(tool, delta["partial_json"]))

    def _merge_usage(self, usage: Any) -> None:
        # message_delta counts are cumulative; a null there means "unchanged since message_start".
        if isinstance(usage, dict):
            # The usual usage has no null: one C-level scan instead of a comprehension.
            self._usage.update({k: v for k, v in usage.items() if v is not None} if None in usage.values() else usage)

    def _fail(self, error: SwitchboardError, out: _Sink) -> None:
        out.append(StreamError(error))
        self._done = True


class _Delta(msgspec.Struct):
    type: str = ""
    text: str = ""
    thinking: str = ""
    partial_json: str = ""


class _BlockDelta(msgspec.Struct, tag="content_block_delta", tag_field="type"):
    """A ``content_block_delta`` of the usual shape; anything else fails to decode into it (and takes the
    general path)."""

    delta: _Delta
    index: int = -1


class _Ping(msgspec.Struct, tag="ping", tag_field="type"):
    pass


class _BlockStart(msgspec.Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: dict[str, Any]


class _BlockStop(msgspec.Struct, tag="content_block_stop", tag_field="type"):
    index: int


class _Shell(msgspec.Struct):
    """The message of ``message_start``: only its usage is read (the rest is skipped, not decoded)."""

    usage: dict[str, Any] | None = None


class _MessageStart(msgspec.Struct, tag="message_start", tag_field="type"):
    message: _Shell | None = None


class _StopDelta(msgspec.Struct):
    stop_reason: Any = None


class _MessageDelta(msgspec.Struct, tag="message_delta", tag_field="type"):
    delta: _StopDelta | None = None
    usage: dict[str, Any] | None = None


class _MessageStop(msgspec.Struct, tag="message_stop", tag_field="type"):
    pass


#: The usual events, each into its Struct. A field is required or optional exactly where the general path
#: reads the same value for it (a missing ``content_block_start`` index counts blocks: general path).
_EVENT_DECODER = msgspec.json.Decoder(
    _BlockDelta | _Ping | _BlockStart | _BlockStop | _MessageStart | _MessageDelta | _MessageStop
)

#: Where decoded events go: a list of canonical events (feed) or of those and text runs (feed_spliced).
_Sink: TypeAlias = "list[Event] | list[Event | TextRun]"

_RUN_MARKERS: dict[int, tuple[bytes, Callable[[bytes], list[bytes]]]] = {}
_CACHED_MARKERS = 64


def _run_marker(index: int) -> tuple[bytes, Callable[[bytes], list[bytes]]]:
    """The bytes between the texts of two text deltas of block ``index``, as Anthropic frames them, and
    the split at them. The split is a compiled pattern's: ``bytes.split`` searches afresh for each
    occurrence (a needle this long costs a table each time), ``re`` with a table computed once."""
    entry = _RUN_MARKERS.get(index)
    if entry is None:
        marker = (
            b'"}}\n\nevent: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
            b'"delta":{"type":"text_delta","text":"' % index
        )
        entry = (marker, re.compile(re.escape(marker)).split)
        if index < _CACHED_MARKERS:  # a bound on what an upstream's block indexes can make us keep
            _RUN_MARKERS[index] = entry
    return entry


def _is_json(data: str) -> bool:
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError:
        return False
    return True


def _map_stop_reason(reason: Any) -> FinishReason:
    return _STOP_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"


def _convert_usage(usage: dict[str, Any]) -> Usage:
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    details = usage.get("output_tokens_details")
    reasoning = details.get("thinking_tokens") if isinstance(details, dict) else None
    return Usage(
        input_tokens=int(usage.get("input_tokens") or 0) + cache_read + cache_write,
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=int(reasoning or 0),
    )


def _error_from_body(provider: str, payload: Any, default_status: int) -> UpstreamError:
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        # Uncut: it may echo the key, and the caller masks before it cuts.
        return UpstreamError(f"{provider}: unexpected answer {payload}", status=default_status)
    type_ = err.get("type") if isinstance(err.get("type"), str) else None
    status = _ERROR_STATUS.get(type_ or "", default_status)
    message = str(err.get("message") or type_ or "error")
    return UpstreamError(f"{provider}: {message}", status=status, type_=type_)
