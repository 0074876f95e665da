"""The one pipeline's start-up heap and its translated stream's fast paths, through the real server."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import models_json
from tests.fakes.anthropic_upstream import Action, FakeAnthropic

MODEL = "claude/claude-sonnet-4-5"


def test_what_start_up_built_is_frozen_out_of_the_collector(start_proxy: Any) -> None:
    """Full collections must not walk the catalog and registry on every request (the p99 at one connection)."""
    proxy = start_proxy()
    registry = proxy.app.state.runtime.registry
    assert gc.get_freeze_count() > 0
    assert not any(obj is registry for obj in gc.get_objects())
    # Requests leave no cycles (below): the young generation holds those in flight, not one every ~9.
    assert gc.get_threshold()[0] >= 5_000
    assert proxy.http().get("/healthz").json()["status"] == "ok"


def test_served_requests_leave_no_reference_cycles(claude: Any) -> None:
    """A request's objects are freed by reference counting when it ends. A cycle through the request's task
    (the disconnect watch once held its own withdrawal) leaves each request's task, coroutine and context
    to the cyclic collector: a young-generation collection every few requests, and a slower server."""
    _, client = claude
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "warm up"}])
    gc.collect()
    gc.disable()
    try:
        for i in range(20):
            messages = [{"role": "user", "content": f"hi {i}"}]
            if i % 2:
                assert client.chat.completions.create(model=MODEL, messages=messages).choices
            else:
                assert list(client.chat.completions.create(model=MODEL, messages=messages, stream=True))
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if type(o).__name__ in ("Task", "DisconnectWatch", "Outcome", "Reply")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


@pytest.fixture
def claude(isolated_env: Path, start_proxy: Any) -> Any:
    fake = FakeAnthropic().start()
    models_json(
        isolated_env,
        {
            "claude": {
                "baseUrl": fake.url,
                "api": "anthropic-messages",
                "apiKey": "sk-ant-test",
                "models": [{"id": "claude-sonnet-4-5"}],
            }
        },
    )
    yield fake, start_proxy().client()
    fake.stop()


def _event(name: str, payload: dict[str, Any], end: str = "\n\n") -> str:
    return f"event: {name}\ndata: {json.dumps(payload)}{end}"


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def test_translated_stream_events_of_every_shape_reach_the_client(claude: Any) -> None:
    """Usual deltas take the typed path; odd ones (null text, extra fields, CRLF framing, an event split
    across reads, a signature) take the general one; the client sees one coherent answer either way."""
    fake, client = claude
    start = {
        "type": "message_start",
        "message": {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "c",
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    }
    text = _event("content_block_delta", _delta(1, {"type": "text_delta", "text": "Hel"}))
    stream = "".join(
        [
            _event("message_start", start),
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
            ),
            _event("content_block_delta", _delta(0, {"type": "thinking_delta", "thinking": "hmm"})),
            _event("content_block_delta", _delta(0, {"type": "signature_delta", "signature": "sig"})),
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
            ),
            text,
            _event("content_block_delta", _delta(1, {"type": "text_delta", "text": None})),
            _event(
                "content_block_delta", _delta(1, {"type": "text_delta", "text": "lo", "extra": [1, 2]}), end="\r\n\r\n"
            ),
            ": a comment line\n\n",
            _event(
                "content_block_delta", {"type": "content_block_delta", "delta": {"type": "text_delta", "text": " wor"}}
            ),
            _event("content_block_delta", _delta(1, {"type": "text_delta", "text": "ld"})),
            _event("content_block_stop", {"type": "content_block_stop", "index": 1}),
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 2,
                    "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                },
            ),
            _event("content_block_delta", _delta(2, {"type": "input_json_delta", "partial_json": '{"a":'})),
            _event("content_block_delta", _delta(2, {"type": "input_json_delta", "partial_json": " 1}"})),
            _event("content_block_stop", {"type": "content_block_stop", "index": 2}),
            _event(
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
            ),
            _event("message_stop", {"type": "message_stop"}),
        ]
    ).encode()
    cut = stream.index(b"Hel") + 1  # an event split across two reads, inside its JSON
    fake.push(Action("raw", chunks=[stream[:cut], stream[cut:]]))
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "Hello world"
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "hmm"
    blocks = [b for d in deltas for b in (getattr(d, "thinking_blocks", None) or [])]
    assert [b["signature"] for b in blocks] == ["sig"]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert calls[0].id == "t1" and calls[0].function.name == "f"
    assert "".join(tc.function.arguments or "" for tc in calls) == '{"a": 1}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    assert len({c.id for c in chunks}) == 1
