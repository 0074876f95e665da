"""Usage on the OpenAI chat passthrough: read out of the relayed bytes, or estimated when it never came.

The passthrough (:class:`proxy.chat._PassthroughLeg`) forwards bytes without parsing them; metering
reads only what usage needs:

* a non-streamed answer: its ``usage`` object (:func:`decode_answer` checks the body is a JSON object
  and returns ``usage`` undecoded, at the cost of the validity check it replaces);
* a stream: only an event whose bytes hold ``"usage": {`` is decoded (:func:`take_usage`), once per
  stream: the usage-only chunk (``"choices": []``) or a last content chunk that carries usage;
* a stream cut before its usage: tokens are estimated (:func:`estimate_input_tokens`,
  :func:`estimate_output_tokens`) and the ledger row marked estimated.

Counts are mapped to the canonical convention (:class:`providers.canonical.Usage`: input includes the
cache, output includes reasoning) from the dialects OpenAI-compatible servers speak (:func:`chat_usage`).
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from providers.canonical import Usage
from providers.wire.openai_completions import chat_usage, chunk_usage

__all__ = [
    "BYTES_PER_TOKEN",
    "decode_answer",
    "estimate_answer_output",
    "estimate_input_tokens",
    "estimate_output_tokens",
    "has_usage",
    "request_usage",
    "take_usage",
    "worst_case_output",
]

#: Bytes of UTF-8 JSON per token for estimates: English text runs ~4 characters a token (OpenAI's rule of
#: thumb); JSON keys and escapes push a request body above that, so estimates from bodies lean high.
BYTES_PER_TOKEN = 4

# A usage *object* (not ``"usage": null``, which OpenAI puts on every chunk once include_usage is set).
# Inside a JSON string the quotes would be escaped (\"usage\"), so model text cannot match.
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
# An empty line ends an SSE event: a line terminator directly followed by another (CRLF is one).
_BOUNDARY = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


# --- budget reservation ---------------------------------------------------------------------


def estimate_input_tokens(body_len: int) -> int:
    """Input tokens of a request body of ``body_len`` bytes: ``ceil(body_len / 4)``.

    An over-estimate for chat (JSON keys, roles and escapes are not tokens) and a large one for inline
    base64 images (a 100 kB image is ~33k "tokens" here, a few thousand billed): fit for reserving a
    budget, and for charging a stream cut before the provider said what it counted.
    """
    return math.ceil(max(body_len, 0) / BYTES_PER_TOKEN)


def worst_case_output(req: dict[str, Any]) -> int | None:
    """The output tokens an OpenAI chat request allows: ``max_completion_tokens``, else ``max_tokens``
    (None when neither is a positive integer: the model's own limit applies)."""
    for field in ("max_completion_tokens", "max_tokens"):
        value = req.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


# --- reading usage --------------------------------------------------------------------------


# ``Raw`` keeps a field undecoded (its syntax still checked). ``Raw | None`` would accept only null, so
# an absent field is an empty Raw and a null one the Raw ``null``: both read as "no usage".
_NO_RAW = msgspec.Raw(b"")


class _Answer(msgspec.Struct):
    """A chat completion reduced to its usage; decoding into it also checks the body is a JSON object."""

    usage: msgspec.Raw = _NO_RAW


class _UsageChunk(msgspec.Struct):
    choices: list[msgspec.Raw] | None = None
    usage: msgspec.Raw = _NO_RAW


_ANSWER = msgspec.json.Decoder(_Answer)
_CHUNK = msgspec.json.Decoder(_UsageChunk)


def decode_answer(body: bytes) -> msgspec.Raw | None:
    """The answer's ``usage``, undecoded (None: absent or null); raises ``msgspec.DecodeError`` or
    ``msgspec.ValidationError`` when ``body`` is not a JSON object."""
    return _raw_or_none(_ANSWER.decode(body).usage)


def _raw_or_none(raw: msgspec.Raw) -> msgspec.Raw | None:
    return raw if raw and bytes(raw) != b"null" else None


# --- streams --------------------------------------------------------------------------------


def has_usage(events: bytes) -> bool:
    """Whether complete events hold a usage object (one substring search unless ``"usage"`` is there)."""
    return _usage_at(events, 0) >= 0


def _usage_at(events: bytes, start: int) -> int:
    """Where the next usage object's key starts, from ``start`` (-1: none). Each ``"usage"`` found by a
    substring search is matched in place, never a regex scan of the whole buffer."""
    i = events.find(b'"usage"', start)
    while i >= 0:
        if _USAGE_OBJECT.match(events, i):
            return i
        i = events.find(b'"usage"', i + 7)
    return -1


def last_usage(events: bytes, at: int) -> Usage | None:
    """The usage of the last event of ``events`` that holds one, searching back from ``at`` (where the
    caller's ``rfind`` saw the last ``"usage"``). A stream's usage is in its last chunk: searching back
    from the end finds it at once, where a forward search wades through every JSON quote before it
    (~5 us for a 12 kB read, measured). CR or CRLF framing (rare) takes :func:`take_usage`'s way."""
    while at >= 0:
        # Compact JSON (what servers send) is a prefix test; spaced JSON takes the pattern.
        if events.startswith(b'"usage":{', at) or _USAGE_OBJECT.match(events, at):
            start = events.rfind(b"\n\n", 0, at)
            end = events.find(b"\n\n", at)
            event = events[0 if start < 0 else start + 2 : len(events) if end < 0 else end + 2]
            if b"\r" in event:
                # CR or CRLF framing: its boundaries are not the blank lines searched for above (and a CR
                # cannot be inside JSON text, so only such framing puts one here).
                return take_usage(events, False)[1]
            usage = chunk_usage(_event_data(event))
            if usage is not None:
                return usage
        at = events.rfind(b'"usage"', 0, at)
    return None


def take_usage(events: bytes, strip: bool, first: int = 0) -> tuple[bytes, Usage | None]:
    """Complete SSE events (ending at a boundary) → the events to forward and the usage they carried.

    Only the events holding a usage object are decoded. With ``strip``, a usage-only chunk (no
    ``choices``, or an empty list) is left out of what is forwarded: the client did not ask for it. A
    content chunk that also carries usage is forwarded whole. ``first``: where to start looking (the
    caller's own search found the first ``"usage"`` there).
    """
    usage: Usage | None = None
    kept: list[bytes] = []
    pos = 0  # events[:pos] are decided (kept or dropped)
    dropped = False
    for start, end in _usage_events(events, first):
        event = events[start:end]
        chunk = _decode_chunk(event)
        raw = _raw_or_none(chunk.usage) if chunk is not None else None
        if chunk is None or raw is None:
            continue
        usage = chat_usage(raw) or usage
        if strip and not chunk.choices:
            kept.append(events[pos:start])
            pos = end
            dropped = True
    if not dropped:
        return events, usage
    kept.append(events[pos:])
    return b"".join(kept), usage


def _usage_events(events: bytes, first: int = 0) -> list[tuple[int, int]]:
    """The bounds of the events that hold a usage object, in order."""
    bounds: list[tuple[int, int]] = []
    if b"\r" in events:  # CR or CRLF framing (rare): cut every event at its boundary, as the splitter does
        start = 0
        for m in _BOUNDARY.finditer(events):
            if _usage_at(events[start : m.end()], 0) >= 0:
                bounds.append((start, m.end()))
            start = m.end()
        return bounds
    i = _usage_at(events, first)
    while i >= 0:
        start = events.rfind(b"\n\n", 0, i)
        end = events.find(b"\n\n", i)
        end = len(events) if end < 0 else end + 2
        bounds.append((0 if start < 0 else start + 2, end))
        i = _usage_at(events, end)
    return bounds


def _decode_chunk(event: bytes) -> _UsageChunk | None:
    data = _event_data(event)
    if not data:
        return None
    try:
        return _CHUNK.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _event_data(event: bytes) -> bytes:
    """The ``data`` field of one SSE event (its ``data:`` lines joined by LF, one leading space dropped)."""
    if event.startswith(b"data: ") and event.find(b"\n") == len(event) - 2 and event.endswith(b"\n\n"):
        return event[6:-2]  # the usual event: one data line and its blank line (no line split)
    parts = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts)


def estimate_output_tokens(relayed: int, sample: bytes) -> int:
    """Output tokens of a stream cut before its usage, from what was forwarded: ``relayed`` bytes, and
    ``sample``, the last events forwarded (the only bytes read, once, here: nothing is counted per chunk
    but the bytes).

    The sample gives the size of an event and of its envelope (id, model, choices: the event's bytes
    minus its content, reasoning, refusal or tool arguments). The estimate is the larger of two counts,
    as neither holds for every provider:

    * one token per event (``relayed`` / the sample's mean event size): OpenAI and most servers send a
      chunk per token;
    * the bytes left once every event's envelope is taken off, at :data:`BYTES_PER_TOKEN` bytes a token:
      for servers that batch tokens into a chunk.

    Envelopes vary with the delta's kind (a tool-call chunk's is larger than a text chunk's), so the
    second count can land on either side; the first keeps it from dropping to nothing.
    """
    if relayed <= 0:
        return 0
    sizes: list[int] = []
    overhead: int | None = None
    start = 0
    for m in _BOUNDARY.finditer(sample):
        event = sample[start : m.end()]
        start = m.end()
        text = _text_bytes(_event_data(event))
        if text is not None:
            sizes.append(len(event))
            overhead = len(event) - text if overhead is None else min(overhead, len(event) - text)
    if overhead is None:
        return math.ceil(relayed / BYTES_PER_TOKEN)  # no chunk to calibrate on: every byte counts
    events = max(round(relayed * len(sizes) / sum(sizes)), 1)
    return max(events, math.ceil(max(relayed - events * overhead, 0) / BYTES_PER_TOKEN))


def estimate_answer_output(body: bytes) -> int:
    """Output tokens of a non-streamed answer that carried no usage: its message text at
    :data:`BYTES_PER_TOKEN` bytes a token."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return 0
    total = 0
    for choice in _list(data.get("choices") if isinstance(data, dict) else None):
        message = choice.get("message") if isinstance(choice, dict) else None
        total += _message_text(message)
    return math.ceil(total / BYTES_PER_TOKEN)


def _text_bytes(data: bytes) -> int | None:
    """UTF-8 bytes of the generated text in one chunk's JSON (None: not a chunk)."""
    if not data.startswith(b"{"):
        return None
    try:
        chunk = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
        return None
    total = 0
    for choice in chunk["choices"]:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        total += _message_text(delta)
    return total


def _message_text(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    total = 0
    for key in ("content", "reasoning_content", "reasoning", "refusal"):
        value = message.get(key)
        if isinstance(value, str):
            total += _json_len(value)
    for call in _list(message.get("tool_calls")):
        fn = call.get("function") if isinstance(call, dict) else None
        args = fn.get("arguments") if isinstance(fn, dict) else None
        if isinstance(args, str):
            total += _json_len(args)
    return total


def _json_len(text: str) -> int:
    # As it stands in the event (escapes included), without its quotes.
    return len(msgspec.json.encode(text)) - 2


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def request_usage(body: dict[str, Any]) -> bool:
    """Ask an OpenAI chat stream for its usage chunk (``stream_options.include_usage``) unless the
    client did; True when it was added here, so the leg strips that chunk from what the client gets.

    Other ``stream_options`` keys are kept; a ``stream_options`` that is not an object is left for the
    upstream to refuse.
    """
    options = body.get("stream_options")
    if options is None:
        body["stream_options"] = {"include_usage": True}
        return True
    if not isinstance(options, dict) or options.get("include_usage") is True:
        return False
    # A new dict: a fallback Target's copy of the request shares the client's nested objects.
    body["stream_options"] = {**options, "include_usage": True}
    return True
