"""SSE framing: the parser and the event splitter, fed committed provider streams split at every byte.

The expected events come from a small reference parser written here from the WHATWG rules (lines end in
CRLF, LF or CR; a blank line dispatches an event if it has data; ``:`` starts a comment), run over the
whole stream at once, and the edge-case fixtures are also checked against hard-coded event lists. Then
every way of cutting the bytes in two, and byte-by-byte, must give the same events, and the splitter
must only ever hand out whole events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from providers.sse import Event, EventSplitter, SSEParser, encode_event

FIXTURES = Path(__file__).parent / "fixtures" / "sse"
NAMES = [
    "openai_chat_tool_calls.sse",
    "openai_chat_tool_calls_crlf.sse",
    "anthropic_messages.sse",
    "fields_and_comments.sse",
    "mixed_line_endings.sse",
]


def _load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --- reference implementation, from the spec, over the whole stream at once -------------------------


def _reference(data: bytes) -> tuple[list[Event], list[int]]:
    """Spec parsing, plus the documented extension: a last event without a blank line still counts.

    Also returns, for each event ended by a blank line, the offset just past the first byte of that
    line's terminator: the earliest point at which the event is known to be complete.
    """
    out: list[Event] = []
    known_at: list[int] = []
    event_type, data_lines, ev_id, retry = "", [], None, None
    lines: list[tuple[bytes, int]] = []
    end = 0
    for m in re.finditer(rb"([^\r\n]*)(\r\n|\r|\n)", data):
        lines.append((m.group(1), m.start(2) + 1))
        end = m.end()
    # An unterminated last line still counts, then an implied blank line dispatches the last event.
    lines += [(data[end:], -1), (b"", -1)] if data[end:] else [(b"", -1)]
    for raw, offset in lines:
        line = raw.decode("utf-8")
        if line == "":
            if data_lines:
                out.append(Event(event_type or "message", "\n".join(data_lines), ev_id, retry))
                known_at.append(offset)
            event_type, data_lines, ev_id, retry = "", [], None, None
            continue
        if line.startswith(":"):
            continue
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data_lines.append(value)
        elif field == "event":
            event_type = value
        elif field == "id":
            ev_id = value
        elif field == "retry" and re.fullmatch(r"[0-9]+", value):
            retry = int(value)
    return out, [k for k in known_at if k >= 0]


def _reference_events(data: bytes) -> list[Event]:
    return _reference(data)[0]


def _empty_line_ends(data: bytes) -> tuple[set[int], set[int]]:
    """Offsets just after an empty line (where a piece may end), and the subset that ends an event.

    An event ends at the first empty line after a non-empty one; further empty lines are harmless
    padding that a splitter may hold back until the next event.
    """
    allowed, required = {0}, set()
    previous_empty = True
    for m in re.finditer(rb"([^\r\n]*)(\r\n|\r|\n)", data):
        empty = m.group(1) == b""
        if empty:
            allowed.add(m.end())
            if not previous_empty:
                required.add(m.end())
        previous_empty = empty
    return allowed, required


def _parse(chunks: Iterable[bytes]) -> list[Event]:
    parser = SSEParser()
    out: list[Event] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return out


def _split_at(data: bytes, i: int) -> list[bytes]:
    return [data[:i], data[i:]]


def _bytes(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# --- the fixtures themselves -------------------------------------------------------------------------


def _data_json(events: list[Event]) -> list[dict]:
    return [json.loads(e.data) for e in events if e.data != "[DONE]"]


@pytest.mark.parametrize("name", ["openai_chat_tool_calls.sse", "openai_chat_tool_calls_crlf.sse"])
def test_openai_fixture_shape(name: str) -> None:
    events = _reference_events(_load(name))
    assert len(events) == 25
    assert all(e.event == "message" for e in events)
    assert events[-1].data == "[DONE]"
    chunks = _data_json(events)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Je vérifie la météo à Zürich 🌦️…"
    args: dict[int, str] = {}
    for c in chunks:
        for call in (c["choices"][0]["delta"].get("tool_calls") or []) if c["choices"] else []:
            args[call["index"]] = args.get(call["index"], "") + call["function"]["arguments"]
    assert {i: json.loads(a) for i, a in args.items()} == {
        0: {"city": "Zürich", "unit": "celsius"},
        1: {"tz": "Europe/Zurich"},
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 128


def test_crlf_fixture_is_the_lf_fixture_reframed() -> None:
    lf, crlf = _load("openai_chat_tool_calls.sse"), _load("openai_chat_tool_calls_crlf.sse")
    assert b"\r" not in lf and crlf.count(b"\r\n") == lf.count(b"\n") == 50
    assert crlf.replace(b"\r\n", b"\n") == lf


def test_anthropic_fixture_shape() -> None:
    events = _reference_events(_load("anthropic_messages.sse"))
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * 5,
        "ping",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    bodies = _data_json(events)
    assert all(b["type"] == e.event for b, e in zip(bodies, events, strict=True))
    text = "".join(b["delta"]["text"] for b in bodies if b["type"] == "content_block_delta" and b["index"] == 0)
    assert text == "Okay, let me check the weather in São Paulo — one moment."
    partial = "".join(b["delta"]["partial_json"] for b in bodies if b["type"] == "content_block_delta" and b["index"])
    assert json.loads(partial) == {"location": "São Paulo, BR", "unit": "celsius"}
    assert bodies[-2]["delta"]["stop_reason"] == "tool_use" and bodies[-2]["usage"]["output_tokens"] == 89


FIELDS_EXPECTED = [
    Event("status", '{"phase": "queued"}', "evt-1", 3000),
    Event("message", "first line\nsecond line, no space after the colon\n\n two leading spaces keep one"),
    # "event: heartbeat" with no data is not dispatched, and does not leak into the next event.
    Event(
        "multi",
        "a colon: inside the value\n"
        "form feed \x0c, vertical tab \x0b, line separator \u2028 and NEL \x85 are not line breaks\n"
        "emoji 🛰️ and accents àéîõü",
        "evt-2",
    ),
    Event("message", "after an unknown field"),
    Event("message", "a retry that is not a number is ignored", "evt-3"),
    Event("message", ""),
    Event("done", "bye"),  # no blank line, not even a newline, after it
]

MIXED_EXPECTED = [
    Event("message", "cr-only line\nsecond cr line"),
    Event("crlf", "crlf framed"),
    Event("message", "lf then crlf"),
    Event("message", "crlf then cr"),
    Event("message", "crlf then lf"),
    Event("message", "cr then crlf"),
    Event("last", "terminated line, no blank line after it"),
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("fields_and_comments.sse", FIELDS_EXPECTED), ("mixed_line_endings.sse", MIXED_EXPECTED)],
)
def test_edge_fixtures_parse_to_known_events(name: str, expected: list[Event]) -> None:
    data = _load(name)
    assert _reference_events(data) == expected
    assert _parse([data]) == expected


# --- SSEParser ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_parser_every_two_way_split(name: str) -> None:
    data = _load(name)
    expected = _reference_events(data)
    assert _parse([data]) == expected
    for i in range(len(data) + 1):
        got = _parse(_split_at(data, i))
        assert got == expected, f"split at byte {i}: {data[max(0, i - 12) : i]!r} | {data[i : i + 12]!r}"


@pytest.mark.parametrize("name", NAMES)
def test_parser_byte_by_byte(name: str) -> None:
    data = _load(name)
    assert _parse(_bytes(data)) == _reference_events(data)


@pytest.mark.parametrize("name", NAMES)
def test_parser_ignores_empty_chunks(name: str) -> None:
    """An empty read between the CR and the LF of a CRLF must not turn the LF into a blank line."""
    data = _load(name)
    chunks = [piece for b in _bytes(data) for piece in (b, b"")]
    assert _parse(chunks) == _reference_events(data)


@pytest.mark.parametrize("name", NAMES)
def test_parser_yields_each_event_as_soon_as_its_blank_line_arrives(name: str) -> None:
    data = _load(name)
    _, known_at = _reference(data)
    parser = SSEParser()
    seen = 0
    for k in range(1, len(data) + 1):
        seen += len(parser.feed(data[k - 1 : k]))
        complete = sum(1 for b in known_at if b <= k)
        assert seen == complete, f"after {k} bytes: {seen} events, {complete} complete"


def test_parser_cr_split_from_lf_across_three_chunks() -> None:
    parser = SSEParser()
    got = [*parser.feed(b"data: a\r"), *parser.feed(b"\n"), *parser.feed(b"data: b\r"), *parser.feed(b"\n\r\n")]
    assert got == [Event("message", "a\nb")]
    assert parser.close() == []


def test_parser_retry_accepts_only_ascii_digits() -> None:
    # "²" and "٣" are str.isdigit() but not ASCII digits; the spec ignores such a field.
    for value in ("²", "٣", "-1", "1.5", ""):
        assert _parse([f"retry: {value}\ndata: x\n\n".encode()]) == [Event("message", "x")], value
    assert _parse([b"retry: 0250\ndata: x\n\n"]) == [Event("message", "x", retry=250)]


def test_parser_id_with_nul_is_ignored() -> None:
    assert _parse([b"id: a\x00b\ndata: x\n\n"]) == [Event("message", "x")]


def test_parser_feed_is_eager() -> None:
    """A caller that feeds without looking at the result must not lose the chunk."""
    parser = SSEParser()
    parser.feed(b"event: delta\ndata: {")
    parser.feed(b'"a": 1}\n')
    assert parser.feed(b"\n") == [Event("delta", '{"a": 1}')]


def test_parser_block_without_data_dispatches_nothing() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: ping\nid: 7\nretry: 10\n\n") == []
    assert parser.feed(b"data: x\n\n") == [Event("message", "x")]  # nothing carried over
    assert parser.feed(b"event: ping") == [] and parser.close() == []


# --- EventSplitter -----------------------------------------------------------------------------------


def _check_splitter(data: bytes, chunks: list[bytes], expected: list[Event]) -> None:
    """Pieces reassemble the input, each ends after an empty line, none holds back a finished event."""
    allowed, required = _empty_line_ends(data)
    splitter = EventSplitter()
    pieces: list[bytes] = []
    fed = emitted = 0
    for chunk in chunks:
        fed += len(chunk)
        piece = splitter.feed(chunk)
        emitted += len(piece)
        if piece:
            pieces.append(piece)
        assert emitted in allowed, f"piece ends mid-event at byte {emitted}: ...{data[emitted - 20 : emitted]!r}"
        # An event ending in a bare CR is only known to be complete once the next byte is not LF.
        due = [b for b in required if b < fed or (b == fed and data[fed - 1 : fed] != b"\r")]
        assert emitted >= max(due, default=0), f"held back a complete event after {fed} bytes"
    rest = splitter.flush()
    assert not splitter.pending
    assert b"".join(pieces) + rest == data
    # Each piece is whole events: parsed on its own, the pieces give exactly the stream's events.
    events: list[Event] = []
    for piece in pieces:
        parser = SSEParser()
        events.extend(parser.feed(piece))
        assert parser.close() == [], f"piece {piece!r} ends with half an event"
    events.extend(_parse([rest]))
    assert events == expected


@pytest.mark.parametrize("name", NAMES)
def test_splitter_every_two_way_split(name: str) -> None:
    data = _load(name)
    expected = _reference_events(data)
    for i in range(len(data) + 1):
        _check_splitter(data, _split_at(data, i), expected)


@pytest.mark.parametrize("name", NAMES)
def test_splitter_byte_by_byte(name: str) -> None:
    data = _load(name)
    _check_splitter(data, _bytes(data), _reference_events(data))


@pytest.mark.parametrize("name", NAMES)
def test_splitter_uneven_chunks(name: str) -> None:
    data = _load(name)
    expected = _reference_events(data)
    for size in (2, 3, 5, 7, 64, 1000):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        _check_splitter(data, chunks, expected)


def test_splitter_holds_trailing_cr_until_the_next_byte() -> None:
    splitter = EventSplitter()
    assert splitter.feed(b"data: a\r\n\r") == b""  # the CR may be the first half of CRLF
    assert splitter.feed(b"\n") == b"data: a\r\n\r\n"
    assert splitter.feed(b"data: b\r\r") == b""
    assert splitter.feed(b"d") == b"data: b\r\r"  # not followed by LF: the CR was the blank line
    assert splitter.pending and splitter.flush() == b"d"


def test_splitter_whole_lf_events_pass_through_unchanged() -> None:
    data = _load("openai_chat_tool_calls.sse")
    splitter = EventSplitter()
    assert splitter.feed(data) == data
    assert not splitter.pending and splitter.flush() == b""


# --- encode_event ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        '{"choices":[{"delta":{"content":"hi"}}]}',
        b'{"error":{"message":"upstream broke off","type":"api_error","param":null,"code":null}}',
        "[DONE]",
        "",
        "  two leading spaces",
        "data: looks like a field",
        ": looks like a comment",
        "ünïcödé ✓ 🛰️",
    ],
)
@pytest.mark.parametrize("event", [None, "message_delta", "error"])
def test_encode_event_round_trips(data: str | bytes, event: str | None) -> None:
    raw = encode_event(data, event)
    text = data.decode() if isinstance(data, bytes) else data
    expected = [Event(event or "message", text)]
    assert _parse([raw]) == expected
    assert _parse(_bytes(raw)) == expected
    splitter = EventSplitter()
    assert splitter.feed(raw) == raw and not splitter.pending


def test_encoded_events_concatenate_into_a_stream() -> None:
    stream = b"".join(encode_event(json.dumps({"n": n}), "tick" if n % 2 else None) for n in range(50))
    events = _parse(_bytes(stream))
    assert [json.loads(e.data)["n"] for e in events] == list(range(50))
    assert [e.event for e in events[:3]] == ["message", "tick", "message"]
