"""Server-sent events framing (https://html.spec.whatwg.org/multipage/server-sent-events.html).

Two tools over the same framing rules:

* :class:`EventSplitter` cuts a byte stream at event boundaries without parsing fields, for the
  passthrough fast path: complete events are forwarded untouched, a partial one is held back, so an error
  event appended after an upstream failure never lands in the middle of a half-sent event.
* :class:`SSEParser` parses events into ``(event, data)`` pairs, for translators and accounting.

Lines end in LF, CRLF or CR; an event ends at an empty line. Both are fed arbitrary chunks (a boundary
may fall anywhere, even between CR and LF).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Event",
    "EventSplitter",
    "SSEParser",
    "TextRun",
    "encode_event",
    "is_json_text",
    "raw_event",
]

# An empty line: a line terminator directly followed by another. CR LF counts as one terminator.
_BOUNDARY = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


class EventSplitter:
    """Yields the longest prefix of the stream so far that ends at an event boundary."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """Complete events (possibly several, possibly none) ready to forward, bytes unchanged."""
        data = self._pending + chunk if self._pending else chunk
        # Fast path: the usual upstream chunk is one or more whole LF-framed events.
        if data.endswith(b"\n\n") and b"\r" not in data:
            self._pending = b""
            return data
        end = _last_boundary_end(data)
        self._pending = data[end:]
        return data[:end]

    def flush(self) -> bytes:
        """What was held back (an unterminated last event) when the stream ends."""
        rest, self._pending = self._pending, b""
        return rest

    @property
    def pending(self) -> bool:
        return bool(self._pending)


def _last_boundary_end(data: bytes) -> int:
    end = 0
    for m in _BOUNDARY.finditer(data):
        end = m.end()
    # A trailing CR may be the first half of a CRLF still in flight: not a boundary yet.
    if end == len(data) and data.endswith(b"\r"):
        end = max((m.end() for m in _BOUNDARY.finditer(data[:-1])), default=0)
    return end


@dataclass(slots=True)
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Incremental SSE parser: ``feed(bytes)`` returns the :class:`Event` objects the chunk completes.

    As the spec says, a block without ``data:`` lines (``event: ping`` alone) dispatches nothing. Unlike
    the spec, ``id`` and ``retry`` are those of the event itself, not carried over to later events.
    """

    __slots__ = ("_buf", "_cr_pending", "_data", "_event", "_id", "_retry")

    def __init__(self) -> None:
        self._buf = b""
        self._cr_pending = False
        self._reset()

    def _reset(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """The events this chunk completes (eager: a chunk is consumed even if the result is ignored)."""
        if not chunk:
            return []  # an empty read must not forget a CR whose LF is still to come
        if self._cr_pending and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._cr_pending = False
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" not in buf and not self._data and not self._event and self._id is None and self._retry is None:
            return self._feed_blocks(buf)
        lines = buf.splitlines(keepends=True)
        self._buf = b""
        if lines and not lines[-1].endswith((b"\n", b"\r")):
            self._buf = lines.pop()
        elif lines and lines[-1].endswith(b"\r"):
            self._cr_pending = True
        out: list[Event] = []
        for raw in lines:
            ev = self._line(raw.rstrip(b"\r\n").decode("utf-8", "replace"))
            if ev is not None:
                out.append(ev)
        return out

    def _feed_blocks(self, buf: bytes) -> list[Event]:
        # The usual stream (LF only, no event half-parsed): cut whole blocks at their blank line and read
        # each in one go; the rest stays raw in _buf, from the start of its block, for either path.
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        out: list[Event] = []
        for block in buf[:end].split(b"\n\n"):
            if block:
                ev = _read_block(block)
                if ev is not None:
                    out.append(ev)
        return out

    def feed_raw(self, chunk: bytes) -> list[tuple[str, bytes]]:
        """:meth:`feed` as ``(event, data)`` pairs with the data left as UTF-8 bytes (``id`` and ``retry``
        dropped), for a translator that decodes each event's JSON straight from bytes: on the usual stream
        no :class:`Event` is built and no data is decoded twice."""
        if (
            chunk
            and not self._cr_pending
            and not self._data
            and not self._event
            and self._id is None
            and self._retry is None
        ):
            buf = self._buf + chunk if self._buf else chunk
            if b"\r" not in buf:
                return self._raw_blocks(buf)
        # CR line ends or an event half-parsed by the line path: the general rules, re-encoded (rare).
        return [(ev.event, ev.data.encode()) for ev in self.feed(chunk)]

    def _raw_blocks(self, buf: bytes) -> list[tuple[str, bytes]]:
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        out: list[tuple[str, bytes]] = []
        for block in buf[:end].split(b"\n\n"):
            pair = raw_event(block)
            if pair is not None:
                out.append(pair)
        return out

    def feed_complete(self, chunk: bytes) -> bytes | None:
        """:meth:`feed_raw`'s usual case one step earlier, for a translator that recognises its commonest
        event by its bytes: the events this chunk completes as one piece of bytes, LF line ends, a blank
        line between two events and none after the last (b"": none complete; read the others with
        :func:`raw_event` on each ``split(b"\\n\\n")`` part). None, with the chunk not consumed, when the
        general rules apply (CR line ends, an event half-parsed, an empty chunk): call :meth:`feed_raw`."""
        if (
            not chunk
            or self._cr_pending
            or self._data
            or self._event
            or self._id is not None
            or self._retry is not None
        ):
            return None
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            return None
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return b""
        self._buf = buf[end + 2 :]
        return buf[:end]

    def close(self) -> list[Event]:
        """Dispatch what an unterminated final event holds (the spec drops it; providers rely on it)."""
        out: list[Event] = []
        rest, self._buf = self._buf, b""
        # Complete lines too when the block path held the event back whole.
        for raw in rest.splitlines():
            ev = self._line(raw.decode("utf-8", "replace"))
            if ev is not None:
                out.append(ev)
        if self._data:
            out.append(self._dispatch())
        self._reset()
        self._cr_pending = False
        return out

    def _line(self, line: str) -> Event | None:
        if not line:
            if self._data:
                return self._dispatch()
            self._reset()  # a block with no data dispatches nothing, and its fields do not carry over
            return None
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> Event:
        ev = Event(self._event or "message", "\n".join(self._data), self._id, self._retry)
        self._reset()
        return ev


#: Event names as str without a decode per event (any name still works; these are the common ones).
_NAMES = {
    name.encode(): name
    for name in (
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    )
}


def raw_event(block: bytes) -> tuple[str, bytes] | None:
    """One event's block (its lines, no blank line) as ``(event, data)``, data as UTF-8 bytes (None: no data)."""
    nl = block.find(b"\n")
    if (
        nl > 7
        and block.startswith(b"event: ")
        and block.startswith(b"data: ", nl + 1)
        and block.find(b"\n", nl + 1) < 0
    ):
        # One event line, one data line: what almost every provider sends.
        name = _NAMES.get(block[7:nl])
        if name is None:
            name = block[7:nl].decode("utf-8", "replace")
        return name, block[nl + 7 :]
    if not block:
        return None
    ev = _read_block(block)
    return None if ev is None else (ev.event, ev.data.encode())


def _read_block(block: bytes) -> Event | None:
    """One event's lines (LF-separated, no blank line between them), by the rules of :meth:`SSEParser._line`."""
    nl = block.find(b"\n")
    if (
        nl > 0
        and block.startswith(b"event: ")
        and block.startswith(b"data: ", nl + 1)
        and block.find(b"\n", nl + 1) < 0
    ):
        # What almost every provider sends: one event line, one data line.
        return Event(block[7:nl].decode("utf-8", "replace") or "message", block[nl + 7 :].decode("utf-8", "replace"))
    event = ""
    data: list[bytes] = []
    id_: str | None = None
    retry: int | None = None
    for line in block.split(b"\n"):
        if not line or line[0] == 0x3A:  # a blank line at the block's edge, or a ":" comment
            continue
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            id_ = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            retry = int(value)
    if not data:
        return None
    joined = data[0] if len(data) == 1 else b"\n".join(data)
    return Event(event or "message", joined.decode("utf-8", "replace"), id_, retry)


def encode_event(data: bytes | str, event: str | None = None) -> bytes:
    """One SSE event; ``data`` must not contain newlines (JSON from msgspec never does)."""
    payload = data.encode() if isinstance(data, str) else data
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


# --- text left as JSON, for translators that splice it from one JSON event into another -------------------


class TextRun:
    """Consecutive non-empty text deltas, each the content of its JSON string (no quotes) exactly as
    ``msgspec.json.encode`` writes the text (see :func:`is_json_text`): what a decoder's ``feed_spliced``
    gives in place of their ``TextDelta`` events, for an encoder that writes JSON to frame as they are."""

    __slots__ = ("texts",)

    def __init__(self, texts: list[bytes]) -> None:
        self.texts = texts


_QUOTE_BACKSLASH_CONTROL = re.compile(rb'["\\\x00-\x1f]')


def is_json_text(text: bytes) -> bool:
    """``b'"' + text + b'"'`` is a JSON string that ``msgspec.json.encode`` writes byte for byte the same
    for the text it holds: valid UTF-8 without quote, backslash (no escape to normalise) or control
    character."""
    if _QUOTE_BACKSLASH_CONTROL.search(text) is not None:
        return False
    if text.isascii():
        return True
    try:
        text.decode()
    except UnicodeDecodeError:
        return False
    return True
