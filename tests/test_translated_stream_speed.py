"""The translated stream's fast paths keep its behaviour.

* :meth:`SSEParser.feed_raw` (what the Anthropic stream decoder reads) gives the events :meth:`SSEParser.feed`
  gives, on committed provider streams cut at every byte and on generated streams cut anywhere;
* a client that leaves a translated stream still aborts the upstream one, now that an aiohttp response is
  closed without ``asyncio.shield``;
* the translated stream through the real proxy carries the same text as before, chunk for chunk;
* text runs spliced from the upstream's JSON (``feed_spliced``) come out byte for byte as the canonical
  path encodes them, on the recorded bench stream and on awkward ones, cut at every byte;
* the relay sends the last chunk and the stream's end together when the body is known to be complete,
  and never holds a chunk back while the body goes on;
* the typed per-event decoding of the Anthropic stream reads every event, usual or odd, exactly as the
  general (dict) path does;
* splicing is a declared contract (SplicingDecoder / SplicingEncoder), and the wire headers merge into the
  credential's without touching them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.canonical import Usage
from providers.credentials import ResolvedAuth
from providers.sse import SSEParser, TextRun
from providers.transport import AiohttpClient, Timeouts
from providers.wire.anthropic_stream import MessageStreamDecoder
from providers.wire.base import SplicingDecoder
from providers.wire.bedrock_stream import ConverseStreamDecoder
from providers.wire.google_stream import GeminiDecoder
from providers.wire.openai_chat_stream import ChatStreamDecoder
from providers.wire.openai_responses_stream import ResponsesStreamDecoder
from proxy.streaming import relay
from proxy.surfaces.messages_out import MessageStreamEncoder
from proxy.surfaces.openai_chat_out import ChunkEncoder
from proxy.translated import SplicingEncoder
from proxy.upstream_call import merged_headers
from tests.conftest import models_json
from tests.fakes.anthropic_upstream import Action, FakeAnthropic

FIXTURES = Path(__file__).parent / "fixtures" / "sse"
NAMES = sorted(p.name for p in FIXTURES.glob("*.sse"))
MODEL = "claude/claude-sonnet-4-5"


def _raw(chunks: list[bytes]) -> list[tuple[str, bytes]]:
    parser = SSEParser()
    out = [pair for chunk in chunks for pair in parser.feed_raw(chunk)]
    return out + [(ev.event, ev.data.encode()) for ev in parser.close()]


def _events(chunks: list[bytes]) -> list[tuple[str, bytes]]:
    parser = SSEParser()
    events = [ev for chunk in chunks for ev in parser.feed(chunk)] + parser.close()
    return [(ev.event, ev.data.encode()) for ev in events]


@pytest.mark.parametrize("name", NAMES)
def test_feed_raw_matches_feed_at_every_split(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    expected = _events([data])
    assert expected, "the fixture has events"
    for i in range(len(data) + 1):
        assert _raw([data[:i], data[i:]]) == expected, f"split at byte {i}: {data[max(0, i - 12) : i + 12]!r}"
    assert _raw([data[k : k + 1] for k in range(len(data))]) == expected


_LINE = st.sampled_from(
    [
        b"event: content_block_delta",
        b"event: ping",
        b"event:x",
        b"event: ",
        b"data: {}",
        b'data: {"a": "\xc3\xa9"}',
        b"data:no space",
        b"data: \xff",
        b"data:",
        b": a comment",
        b"id: 7",
        b"retry: 30",
        b"",
    ]
)
_END = st.sampled_from([b"\n", b"\r\n", b"\r"])


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.tuples(_LINE, _END, st.booleans()), max_size=24),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_feed_raw_matches_feed_on_any_stream(lines: list[tuple[bytes, bytes, bool]], cuts: list[int]) -> None:
    # Mostly LF-framed, whole events (the fast path), with CR line ends and odd fields mixed in.
    data = b"".join(line + (b"\n" if lf else end) for line, end, lf in lines)
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert _raw(chunks) == _events(chunks)


# --- through the proxy ---------------------------------------------------------------------------


@pytest.fixture
def claude(isolated_env: Path) -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    models_json(
        isolated_env,
        {
            "claude": {
                "baseUrl": fake.url,
                "api": "anthropic-messages",
                "apiKey": "sk-ant-test",
                "models": [{"id": "claude-sonnet-4-5", "maxTokens": 64000}],
            }
        },
    )
    yield fake
    fake.stop()


def test_client_leaving_a_translated_stream_aborts_the_upstream(claude: FakeAnthropic, start_proxy: Any) -> None:
    claude.push(Action("slow", seconds=0.5))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "count slowly"}], "stream": True}
    with start_proxy().http().stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert next(line for line in resp.iter_lines() if line.startswith("data: "))
    # The client closed after its first event; the upstream stream must be aborted, not drained.
    assert claude.disconnected.wait(30), "the upstream kept streaming after the client left"


def test_translated_stream_text_and_chunks(claude: FakeAnthropic, start_proxy: Any) -> None:
    stream = (
        start_proxy()
        .client()
        .chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "one two three"}], stream=True)
    )
    chunks = list(stream)
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(contents) == "Echo: one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-") and len(chunks[0].id) == 33
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


# --- text runs spliced without decoding (MessageStreamDecoder.feed_spliced + ChunkEncoder) --------------

BENCH_STREAM = (Path(__file__).parent.parent / "bench" / "anthropic-stream.txt").read_bytes()


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _text(literal: bytes, index: int = 0) -> bytes:
    """A text delta framed byte for byte as Anthropic sends it; ``literal`` is the JSON string's content."""
    return _event(
        "content_block_delta",
        b'{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":"%s"}}' % (index, literal),
    )


def _json(name: str, payload: dict[str, Any]) -> bytes:
    return _event(name, msgspec.json.encode(payload))


_START = _json(
    "message_start",
    {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 9, "output_tokens": 1}}},
)
_PING = _json("ping", {"type": "ping"})
_END = _json(
    "message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}
) + _json("message_stop", {"type": "message_stop"})


def _block(index: int, block: dict[str, Any]) -> bytes:
    return _json("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def _stop(index: int) -> bytes:
    return _json("content_block_stop", {"type": "content_block_stop", "index": index})


#: Texts whose JSON is not in msgspec's form, or not plain: each must come out as msgspec writes the text.
_AWKWARD = [
    b"Hello ",
    rb"say \"hi\"",
    rb"back\\slash",
    rb"line\nbreak",
    rb"\u2028 separator",
    rb"\ud83d\ude00 face",
    "caf\u00e9 \u2028 \U0001f600 raw".encode(),
    rb"\u00e9 escaped",
    b"",
    rb"\/ slash",
    b"\x7f del",
    b"<&> plain",
]

STREAMS = {
    "bench": BENCH_STREAM,
    "awkward texts": _START
    + _block(0, {"type": "text", "text": ""})
    + _PING
    + b"".join(_text(t) for t in _AWKWARD)
    + _text(b"a")
    + _text(b"b")
    + _PING
    + _text(b"c")
    + _stop(0)
    + _END,
    "empty deltas first": _START
    + _block(0, {"type": "text", "text": ""})
    + _text(b"")
    + _text(b"")
    + _text(b"one")
    + _text(b"two")
    + _stop(0)
    + _END,
    "text after a tool block": _START
    + _block(0, {"type": "text", "text": ""})
    + _text(b"Let me look.")
    + _text(b" One moment.")
    + _stop(0)
    + _block(1, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}})
    + _json(
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a":'}},
    )
    + _json(
        "content_block_delta",
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
    )
    + _stop(1)
    + _block(2, {"type": "text", "text": ""})
    + _text(b"It is ", 2)
    + _text(b"sunny", 2)
    + _text(rb"\n", 2)
    + _text(b"today.", 2)
    + _stop(2)
    + _END,
    "thinking then text": _START
    + _block(0, {"type": "thinking", "thinking": ""})
    + _json(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
    )
    + _json(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}},
    )
    + _stop(0)
    + _block(1, {"type": "text", "text": "Start: "})
    + _text(b"the ", 1)
    + _text(b"answer", 1)
    + _text(b" is 4.", 1)
    + _stop(1)
    + _END,
    "error in the middle": _START
    + _block(0, {"type": "text", "text": ""})
    + _text(b"partial ")
    + _text(b"answer")
    + _json("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    + _text(b"never")
    + _text(b"sent")
    + _END,
    "cut short": _START
    + _block(0, {"type": "text", "text": ""})
    + _text(b"one ")
    + _text(b"two ")
    + _text(b"thr")[:-9],
    "not the usual shape": _START
    + _block(0, {"type": "text", "text": ""})
    + _text(b"ok ")
    + _text(b"ok again")
    + _event(
        "content_block_delta",
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","y":1}}',
    )
    + _text(b"spaced")
    + _event(
        "content_block_delta",
        b'{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "s"}}',
    )
    + _text(b"last")
    + _text(b"one more")
    + _stop(0)
    + _END,
    "invalid UTF-8": _START
    + _block(0, {"type": "text", "text": ""})
    + _text(b"ok ")
    + _text(b"ok")
    + _text(b"bad \xed\xa0\x80 utf8")
    + _text(b"never"),
    "raw control character": _START
    + _block(0, {"type": "text", "text": ""})
    + _text(b"ok ")
    + _text(b"ok")
    + _text(b"tab\there")
    + _text(b"never"),
    "lone surrogate": _START + _block(0, {"type": "text", "text": ""}) + _text(b"a") + _text(rb"\ud83d") + _text(b"b"),
    "index with a leading zero": _START
    + _block(0, {"type": "text", "text": ""})
    + _text(b"a")
    + _text(b"b")
    + _event(
        "content_block_delta", b'{"type":"content_block_delta","index":00,"delta":{"type":"text_delta","text":"c"}}'
    )
    + _text(b"d")
    + _END,
}

_IDS = re.compile(rb'"id":"chatcmpl-[0-9a-f]{24}","object":"chat.completion.chunk","created":\d+')


def _translate(chunks: list[bytes], *, spliced: bool) -> tuple[bytes, Usage | None]:
    """What proxy.streaming.relay makes of the chunks with TranslatedLeg's steps (ids and times blanked)."""
    decoder = MessageStreamDecoder("claude")
    encoder = ChunkEncoder("claude-x", include_usage=True)
    feed = decoder.feed_spliced if spliced else decoder.feed
    out = b""
    try:
        for chunk in chunks:
            out += encoder.encode(feed(chunk))
        out += encoder.finish(decoder.close())
    except Exception as exc:  # as the relay does: a malformed event ends the stream with an error event
        out += encoder.error(exc)
    return _IDS.sub(b'"id":"ID","object":"chat.completion.chunk","created":0', out), encoder.usage()


def _content(sse: bytes) -> str:
    chunks = [msgspec.json.decode(line[6:]) for line in sse.split(b"\n\n") if line.startswith(b"data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


@pytest.mark.parametrize("name", list(STREAMS))
def test_spliced_text_is_byte_for_byte_the_canonical_encoding(name: str) -> None:
    data = STREAMS[name]

    def same(chunks: list[bytes]) -> bool:
        return _translate(chunks, spliced=True) == _translate(chunks, spliced=False)

    assert same([data])
    for i in range(len(data) + 1):
        assert same([data[:i], data[i:]]), f"split at byte {i}: {data[max(0, i - 20) : i + 20]!r}"
    for size in (1, 7, 100):
        assert same([data[k : k + size] for k in range(0, len(data), size)]), f"pieces of {size} bytes"


def test_spliced_texts_decode_to_the_upstream_texts() -> None:
    # An oracle independent of the decoder: the texts as the JSON says they are.
    out, usage = _translate([STREAMS["awkward texts"]], spliced=True)
    texts = [msgspec.json.decode(b'"' + t + b'"') for t in _AWKWARD]
    assert _content(out) == "".join(texts) + "abc"
    assert out.count(b'"content":"\\u2028 separator"') == 0  # msgspec leaves U+2028 unescaped, as before
    assert "\u2028 separator".encode() in out
    assert usage == Usage(input_tokens=9, output_tokens=7)
    assert b'"finish_reason":"stop"' in out and out.endswith(b"data: [DONE]\n\n")


def test_spliced_stream_keeps_usage_tool_calls_and_errors() -> None:
    out, usage = _translate([STREAMS["text after a tool block"]], spliced=True)
    assert _content(out) == "Let me look. One moment.It is sunny\ntoday."
    assert b'"tool_calls":[{"index":0,"id":"toolu_1","type":"function","function":{"name":"get_weather"' in out
    assert usage is not None and usage.output_tokens == 7
    out, usage = _translate([STREAMS["error in the middle"]], spliced=True)
    assert _content(out) == "partial answer" and b"Overloaded" in out and b"never" not in out
    out, usage = _translate([STREAMS["cut short"]], spliced=True)
    assert _content(out) == "one two " and b"stream ended early" in out and usage is None


def test_bench_stream_is_spliced_as_runs() -> None:
    # The fast path is taken on the recorded stream (not only equal by falling back everywhere).
    decoder = MessageStreamDecoder("claude")
    events = decoder.feed_spliced(BENCH_STREAM)
    runs = [e for e in events if isinstance(e, TextRun)]
    assert runs and sum(len(r.texts) for r in runs) >= 55


# --- one send for the last chunk and the stream's end ------------------------------------------------


async def _serve_once(write: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await write(writer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/s"


async def _relay(url: str, sent: list[dict[str, Any]], on_body: asyncio.Event | None = None) -> None:
    async def send(message: Any) -> None:
        sent.append(message)
        if on_body is not None and message["type"] == "http.response.body":
            on_body.set()

    client = AiohttpClient(Timeouts())
    try:
        resp = await client.send("POST", url, {}, b"{}")
        auth = ResolvedAuth("http://127.0.0.1", {}, "test")
        await relay(
            send,
            resp,
            auth,
            lambda chunk: chunk,
            lambda: b"TAIL",
            lambda exc: b"ERR",
            provider="fake",
            read_timeout=30,
            client_gone=lambda: False,
        )
    finally:
        await client.close()


async def test_last_chunk_goes_out_with_the_end_of_the_stream() -> None:
    body = b"data: one\n\ndata: two\n\n"

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    server, url = await _serve_once(write)
    sent: list[dict[str, Any]] = []
    async with server:
        await _relay(url, sent)
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert b"".join(m["body"] for m in bodies) == body + b"TAIL"
    assert [m["more_body"] for m in bodies][-1] is False
    # The body's last bytes arrived with its end: they share the final send with the tail.
    assert bodies[-1]["body"].endswith(b"two\n\nTAIL") and len(bodies[-1]["body"]) > len(b"TAIL")


async def test_a_chunk_is_not_held_back_while_the_body_goes_on() -> None:
    first_sent = asyncio.Event()

    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
        await writer.drain()
        # The end of the body comes only once the client got the first event: it must not wait for it.
        await first_sent.wait()
        writer.write(b"0\r\n\r\n")

    server, url = await _serve_once(write)
    sent: list[dict[str, Any]] = []
    async with server:
        await asyncio.wait_for(_relay(url, sent, first_sent), 30)
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert bodies[0] == {"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True}
    assert bodies[-1] == {"type": "http.response.body", "body": b"TAIL", "more_body": False}


# --- typed event decoding (MessageStreamDecoder._dispatch) against the general path ------------------

#: Each event's JSON, of the usual shape or not: the typed decode must read it as the dict path does, or
#: hand it over to that path.
ODD_EVENTS = [
    b'{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{"a":1}}}',
    b'{"type":"content_block_start","content_block":{"type":"text","text":"hi"}}',
    b'{"type":"content_block_start","index":null,"content_block":{"type":"text","text":"x"}}',
    b'{"type":"content_block_start","index":"2","content_block":{"type":"text","text":"x"}}',
    b'{"type":"content_block_start","index":3,"content_block":null}',
    b'{"type":"content_block_start","index":3,"content_block":{}}',
    b'{"type":"content_block_start","index":4,"content_block":{"type":"thinking","thinking":"hm","signature":"s"}}',
    b'{"type":"content_block_start","index":5,"content_block":{"type":"redacted_thinking","data":"d"}}',
    b'{"type":"content_block_stop","index":1}',
    b'{"type":"content_block_stop"}',
    b'{"type":"content_block_stop","index":"1"}',
    b'{"type":"message_start","message":{"id":"m","usage":{"input_tokens":5,"cache_read_input_tokens":null}}}',
    b'{"type":"message_start","message":null}',
    b'{"type":"message_start","message":{}}',
    b'{"type":"message_start","message":{"usage":[1]}}',
    b'{"type":"message_start"}',
    b'{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}',
    b'{"type":"message_delta","delta":null,"usage":null}',
    b'{"type":"message_delta","delta":{"stop_reason":7}}',
    b'{"type":"message_delta","delta":{},"usage":{"output_tokens_details":{"thinking_tokens":3}}}',
    b'{"type":"message_delta","usage":"x"}',
    b'{"type":"message_stop"}',
    b'{"type":"message_stop","extra":[1,2]}',
    b'{"type":"ping"}',
    b'{"type":"ping","x":{"y":1}}',
    b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
    b'{"type":"future_event","x":1}',
    b'{"index":0,"delta":{"type":"text_delta","text":"no type: the name decides"}}',
    b'{"type":7}',
    b"[1,2]",
    b"not json",
    b'{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"t"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\\"b"}}',
    *(block.partition(b"\ndata: ")[2] for block in BENCH_STREAM.split(b"\n\n") if block),
]


def _read_event(data: bytes, *, typed: bool) -> tuple[Any, ...]:
    decoder = MessageStreamDecoder("claude")
    # A text block at 0 and tool blocks at 1 and at -1 (the index the general path assumes when there is
    # none) already open, usage already counted: what the event may change.
    decoder.feed(_START + _block(0, {"type": "text", "text": ""}))
    decoder.feed(_block(1, {"type": "tool_use", "id": "toolu_0", "name": "f", "input": {}}))
    decoder.feed(_block(-1, {"type": "tool_use", "id": "toolu_1", "name": "g", "input": {}}))
    out: list[Any] = []
    if not (typed and decoder._dispatch(data, out)):
        decoder._handle_general("content_block_delta", data, out)
    events = [(type(ev).__name__, str(ev.error) if hasattr(ev, "error") else ev) for ev in out]
    return (events, decoder._blocks, decoder._usage, decoder._finish, decoder._done, decoder._text_index)


@pytest.mark.parametrize("data", ODD_EVENTS)
def test_typed_events_read_as_the_general_path_reads_them(data: bytes) -> None:
    assert _read_event(data, typed=True) == _read_event(data, typed=False)


def test_the_usual_events_take_the_typed_path() -> None:
    # Not only equal by falling back: every event of the recorded stream decodes into its Struct.
    decoder = MessageStreamDecoder("claude")
    for block in BENCH_STREAM.split(b"\n\n"):
        if block:
            assert decoder._dispatch(block.partition(b"\ndata: ")[2], []), block[:60]


# --- the contracts --------------------------------------------------------------------------------


def test_splicing_is_declared_by_the_decoder_and_the_encoder() -> None:
    assert isinstance(MessageStreamDecoder("claude"), SplicingDecoder)
    assert isinstance(ChunkEncoder("m", include_usage=False), SplicingEncoder)
    # The others take the canonical path (TranslatedLeg.stream_steps checks both sides).
    assert not issubclass(ChatStreamDecoder, SplicingDecoder)
    assert not issubclass(ConverseStreamDecoder, SplicingDecoder)
    assert not issubclass(GeminiDecoder, SplicingDecoder)
    assert not issubclass(ResponsesStreamDecoder, SplicingDecoder)
    assert not issubclass(MessageStreamEncoder, SplicingEncoder)


def test_wire_headers_merge_over_a_copy_of_the_credential_headers() -> None:
    auth = ResolvedAuth("https://api.anthropic.com", {"x-api-key": "sk-ant-1", "anthropic-beta": "a"}, "test")
    merged = merged_headers(auth, {"anthropic-version": "2023-06-01", "x-api-key": "", "anthropic-beta": "b"})
    assert merged == {"anthropic-version": "2023-06-01", "anthropic-beta": "b"}
    assert auth.headers == {"x-api-key": "sk-ant-1", "anthropic-beta": "a"}  # the cached credential untouched
