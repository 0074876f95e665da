"""The translated stream's fast paths keep its behaviour.

* :meth:`SSEParser.feed_raw` (what the Anthropic stream decoder reads) gives the events :meth:`SSEParser.feed`
  gives, on committed provider streams cut at every byte and on generated streams cut anywhere;
* a client that leaves a translated stream still aborts the upstream one, now that an aiohttp response is
  closed without ``asyncio.shield``;
* the translated stream through the real proxy carries the same text as before, chunk for chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.sse import SSEParser
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
