"""Usage metering on the OpenAI chat passthrough (:mod:`proxy.metering`, :class:`proxy.chat._PassthroughLeg`).

Through the real proxy, with the pipeline's steps switched to metering (what the gateway's steps do) and
a recorder in :meth:`Steps.finish`; the framing edge cases drive the leg's stream steps with a recorded
OpenAI stream split at every byte.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from providers.canonical import Usage
from providers.errors import UpstreamUnreachable
from providers.wire.openai_completions import chat_usage
from proxy import chat
from proxy.metering import (
    estimate_input_tokens,
    estimate_output_tokens,
    request_usage,
    take_usage,
    worst_case_output,
)
from proxy.pipeline import Caller, Outcome, Steps
from tests.conftest import models_json
from tests.fakes.openai_upstream import Action, FakeOpenAI

FIXTURES = Path(__file__).parent / "fixtures" / "sse"
RECORDED = (FIXTURES / "openai_chat_tool_calls.sse", FIXTURES / "openai_chat_tool_calls_crlf.sse")
#: The fake upstream's usage (tests/fakes/openai_upstream.py ``_usage``).
FAKE_USAGE = Usage(input_tokens=12, output_tokens=9)
#: The recorded stream's usage chunk.
RECORDED_USAGE = Usage(input_tokens=87, output_tokens=41)


class _Recorder(Steps):
    """Metering on; every finished request's leg usage kept (what the gateway's ledger step reads)."""

    meter = True

    def __init__(self) -> None:
        self.done: list[tuple[int, Usage | None, bool]] = []
        self.event = threading.Event()

    def finish(self, caller: Caller, ticket: object, outcome: Outcome) -> None:
        leg = outcome.leg
        usage = leg.usage() if leg is not None else None
        self.done.append((outcome.status, usage, bool(leg is not None and leg.estimated)))
        self.event.set()

    def wait(self) -> tuple[int, Usage | None, bool]:
        assert self.event.wait(10), "the pipeline never finished the request"
        return self.done[-1]


@pytest.fixture
def metered(start_proxy: Any) -> tuple[Any, _Recorder]:
    """A proxy whose pipeline steps meter and record (the Runtime holds the steps)."""
    proxy = start_proxy()
    rec = _Recorder()
    proxy.runtime.steps = rec
    return proxy, rec


def _local(sb_home: Path, fake: FakeOpenAI, compat: dict[str, Any] | None = None) -> None:
    provider: dict[str, Any] = {
        "baseUrl": fake.url + "/v1",
        "api": "openai-completions",
        "apiKey": "sk-local-123",
        "models": [{"id": "gpt-fake"}],
    }
    if compat is not None:
        provider["compat"] = compat
    models_json(sb_home, {"local": provider})


@pytest.fixture
def local(isolated_env: Path, fake_openai: FakeOpenAI) -> FakeOpenAI:
    _local(isolated_env, fake_openai)
    return fake_openai


def _post(http: httpx.Client, **body: Any) -> httpx.Response:
    body = {"model": "local/gpt-fake", "messages": [{"role": "user", "content": "count to three"}], **body}
    return http.post("/v1/chat/completions", json=body)


def _events(raw: bytes) -> list[Any]:
    out = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        if block.startswith(b"data: ") and block != b"data: [DONE]":
            out.append(json.loads(block[6:]))
    return out


# --- through the proxy ----------------------------------------------------------------------


def test_non_streamed_usage_is_read(local: FakeOpenAI, metered: tuple[Any, _Recorder]) -> None:
    proxy, recorder = metered
    resp = _post(proxy.http())
    assert resp.status_code == 200 and resp.json()["usage"]["prompt_tokens"] == 12
    assert recorder.wait() == (200, FAKE_USAGE, False)


def test_stream_asks_for_usage_and_hides_the_chunk_the_client_did_not_ask_for(
    local: FakeOpenAI, metered: tuple[Any, _Recorder]
) -> None:
    proxy, recorder = metered
    resp = _post(proxy.http(), stream=True, stream_options={"include_obfuscation": False})
    assert local.last.body["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    events = _events(resp.content)
    assert resp.content.endswith(b"data: [DONE]\n\n")
    assert all(e["choices"] and "usage" not in e for e in events)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events).strip() == "Echo: count to three"
    assert recorder.wait() == (200, FAKE_USAGE, False)


def test_stream_relays_the_usage_chunk_the_client_asked_for(local: FakeOpenAI, metered: tuple[Any, _Recorder]) -> None:
    proxy, recorder = metered
    resp = _post(proxy.http(), stream=True, stream_options={"include_usage": True})
    assert local.last.body["stream_options"] == {"include_usage": True}
    last = _events(resp.content)[-1]
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 12
    assert recorder.wait() == (200, FAKE_USAGE, False)


@pytest.fixture
def no_stream_usage(isolated_env: Path, fake_openai: FakeOpenAI) -> FakeOpenAI:
    _local(isolated_env, fake_openai, {"supportsUsageInStreaming": False})
    return fake_openai


def test_provider_without_stream_usage_is_not_asked_and_gets_an_estimate(
    no_stream_usage: FakeOpenAI, metered: tuple[Any, _Recorder]
) -> None:
    proxy, recorder = metered
    fake_openai = no_stream_usage
    resp = _post(proxy.http(), stream=True)
    assert resp.status_code == 200 and "stream_options" not in fake_openai.last.body
    status, usage, estimated = recorder.wait()
    assert status == 200 and estimated and usage is not None
    payload = msgspec.json.encode(fake_openai.last.body)  # the bytes the proxy sent, re-encoded alike
    assert usage.input_tokens == estimate_input_tokens(len(payload))
    assert usage.output_tokens >= 6  # six events, one word each


def test_usage_on_the_last_content_chunk_is_read_and_the_chunk_kept(
    local: FakeOpenAI, metered: tuple[Any, _Recorder]
) -> None:
    proxy, recorder = metered
    """Some servers put usage on the finish chunk (choices and usage together): it is content, so it goes
    to the client whole even though it did not ask for usage."""
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-fake"}
    last = {
        **head,
        "choices": [{"index": 0, "delta": {"content": "three"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35},
    }
    first = {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "one two "}}]}
    frames = (
        b"data: " + json.dumps(first).encode() + b"\n\ndata: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n"
    )
    cut = frames.index(b'"usage"') + 3  # the usage event arrives in two reads
    local.push(Action("raw", chunks=[frames[:cut], frames[cut:]]))
    resp = _post(proxy.http(), stream=True)
    assert resp.content == frames
    assert recorder.wait() == (200, Usage(input_tokens=30, output_tokens=5), False)


def test_cut_stream_is_estimated(local: FakeOpenAI, metered: tuple[Any, _Recorder]) -> None:
    proxy, recorder = metered
    local.push(Action("break", after_events=4))
    resp = _post(proxy.http(), stream=True)
    assert b'"error"' in resp.content and resp.content.endswith(b"data: [DONE]\n\n")
    status, usage, estimated = recorder.wait()
    assert status == 200 and estimated and usage is not None
    assert usage.input_tokens == estimate_input_tokens(len(msgspec.json.encode(local.last.body)))
    assert 3 <= usage.output_tokens < 40  # role + "Echo: " + "count " + "to ": a few tokens


def test_client_gone_mid_stream_is_estimated(local: FakeOpenAI, metered: tuple[Any, _Recorder]) -> None:
    proxy, recorder = metered
    local.push(Action("slow", seconds=0.05))
    body = {"model": "local/gpt-fake", "messages": [{"role": "user", "content": "tick"}], "stream": True}
    with (
        httpx.Client(base_url=proxy.url, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as r,
    ):
        seen = 0
        for line in r.iter_lines():
            seen += line.startswith("data: ")
            if seen == 5:
                break
    status, usage, estimated = recorder.wait()
    assert status == 499 and estimated and usage is not None
    assert usage.output_tokens >= 5


def test_unmetered_requests_are_not_touched(local: FakeOpenAI, start_proxy: Any) -> None:
    """The default steps do not meter: no stream_options added, the upstream's bytes relayed as they are."""
    resp = _post(start_proxy().http(), stream=True)
    assert "stream_options" not in local.last.body
    assert resp.status_code == 200 and not any("usage" in e for e in _events(resp.content))


# --- the leg's stream steps, bytes split everywhere ------------------------------------------


def _leg(*, strip: bool, stream: bool = True, meter: bool = True) -> Any:
    return chat._PassthroughLeg("Prov", b"x" * 400, stream, None, meter=meter, strip=strip)


def _relay(leg: Any, chunks: Iterator[bytes] | list[bytes]) -> bytes:
    step, finish, _fail = leg.stream_steps()
    return b"".join(step(c) for c in chunks) + finish()


def _without_usage_chunk(raw: bytes) -> bytes:
    sep = b"\r\n\r\n" if b"\r\n" in raw else b"\n\n"
    return sep.join(e for e in raw.split(sep) if b'"choices":[],"usage":{' not in e)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
@pytest.mark.parametrize("strip", [False, True], ids=["relay", "strip"])
def test_recorded_stream_split_at_every_byte(path: Path, strip: bool) -> None:
    raw = path.read_bytes()
    want = _without_usage_chunk(raw) if strip else raw
    assert want != raw or not strip
    for cut in range(1, len(raw)):
        leg = _leg(strip=strip)
        assert _relay(leg, [raw[:cut], raw[cut:]]) == want, cut
        assert leg.usage() == RECORDED_USAGE and not leg.estimated, cut
    leg = _leg(strip=strip)
    assert _relay(leg, (raw[i : i + 1] for i in range(len(raw)))) == want
    assert leg.usage() == RECORDED_USAGE


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.name)
def test_recorded_stream_cut_anywhere_is_estimated(path: Path) -> None:
    raw = path.read_bytes()
    usage_at = raw.index(b'"choices":[],"usage":{')
    for cut in range(0, usage_at, 97):
        leg = _leg(strip=True)
        step, _finish, fail = leg.stream_steps()
        step(raw[:cut])
        fail(UpstreamUnreachable("cut"))
        usage = leg.usage()
        assert leg.estimated and usage is not None
        assert usage.input_tokens == 100  # 400 bytes of request
        assert (usage.output_tokens > 0) == (cut > raw.index(b"\n") + 2), cut


def test_unmetered_leg_reads_nothing() -> None:
    raw = RECORDED[0].read_bytes()
    leg = _leg(strip=False, meter=False)
    assert _relay(leg, [raw]) == raw
    assert leg.usage() is None and not leg.estimated


def test_metered_answer_reads_usage_or_estimates_it() -> None:
    leg = _leg(strip=False, stream=False)
    assert leg.usage() is None  # nothing answered yet: an upstream error costs nothing
    body = json.dumps(
        {"choices": [{"message": {"content": "x" * 40}}], "usage": {"prompt_tokens": 5, "completion_tokens": 7}}
    ).encode()
    assert leg.answer(200, body, {})[1] == body
    assert leg.usage() == Usage(5, 7) and not leg.estimated
    leg = _leg(strip=False, stream=False)
    leg.answer(200, json.dumps({"choices": [{"message": {"content": "x" * 40}}], "usage": None}).encode(), {})
    assert leg.usage() == Usage(100, 10) and leg.estimated
    with pytest.raises(UpstreamUnreachable, match="not a JSON object"):
        _leg(strip=False, stream=False).answer(200, b'[{"usage": {}}]', {})
    # A usage of an unexpected shape is no reason to fail the answer.
    leg = _leg(strip=False, stream=False)
    leg.answer(200, b'{"choices": [], "usage": "lots"}', {})
    assert leg.estimated is False and leg.usage() == Usage(100, 0) and leg.estimated


# --- the dialects of usage -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "want"),
    [
        pytest.param(  # OpenAI: prompt includes cached, completion includes reasoning
            {
                "prompt_tokens": 2006,
                "completion_tokens": 300,
                "total_tokens": 2306,
                "prompt_tokens_details": {"cached_tokens": 1920},
                "completion_tokens_details": {"reasoning_tokens": 256},
            },
            Usage(2006, 300, 1920, 0, 256),
            id="openai",
        ),
        pytest.param(  # DeepSeek: hit + miss = prompt
            {
                "prompt_tokens": 1000,
                "completion_tokens": 50,
                "total_tokens": 1050,
                "prompt_cache_hit_tokens": 768,
                "prompt_cache_miss_tokens": 232,
            },
            Usage(1000, 50, 768, 0, 0),
            id="deepseek",
        ),
        pytest.param(  # xAI: reasoning beside completion, inside total
            {
                "prompt_tokens": 10120,
                "completion_tokens": 1499,
                "total_tokens": 14428,
                "prompt_tokens_details": {"cached_tokens": 128},
                "completion_tokens_details": {"reasoning_tokens": 2809},
            },
            Usage(10120, 4308, 128, 0, 2809),
            id="xai",
        ),
        pytest.param(  # OpenRouter: cache writes in the details, inside prompt
            {
                "prompt_tokens": 5000,
                "completion_tokens": 20,
                "total_tokens": 5020,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 4800},
            },
            Usage(5000, 20, 0, 4800, 0),
            id="openrouter",
        ),
        pytest.param(  # Anthropic counts copied as they are: prompt without the cache
            {
                "prompt_tokens": 12,
                "completion_tokens": 30,
                "total_tokens": 3042,
                "cache_read_input_tokens": 2000,
                "cache_creation_input_tokens": 1000,
            },
            Usage(3012, 30, 2000, 1000, 0),
            id="anthropic-style",
        ),
        pytest.param(  # Moonshot: cached_tokens at the top level
            {"prompt_tokens": 900, "completion_tokens": 9, "total_tokens": 909, "cached_tokens": 512},
            Usage(900, 9, 512, 0, 0),
            id="moonshot",
        ),
        pytest.param({"prompt_tokens": 12.0, "completion_tokens": 3}, Usage(12, 3), id="floats"),
        pytest.param({"prompt_tokens": None, "prompt_tokens_details": None}, Usage(), id="nulls"),
    ],
)
def test_chat_usage_dialects(usage: dict[str, Any], want: Usage) -> None:
    assert chat_usage(json.dumps(usage).encode()) == want


def test_chat_usage_refuses_what_is_not_usage() -> None:
    assert chat_usage(b'"lots"') is None
    assert chat_usage(b'{"prompt_tokens": "many"}') is None


def test_take_usage_only_drops_usage_only_chunks() -> None:
    usage_only = b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n'
    null_usage = b'data: {"choices": [{"delta": {"content": "\\"usage\\": {"}}], "usage": null}\n\n'
    done = b"data: [DONE]\n\n"
    assert take_usage(null_usage + usage_only + done, True) == (null_usage + done, Usage(1, 2))
    assert take_usage(null_usage + usage_only + done, False) == (null_usage + usage_only + done, Usage(1, 2))
    assert take_usage(null_usage, True) == (null_usage, None)


# --- request side ------------------------------------------------------------------------------


def test_request_usage_adds_include_usage_without_touching_shared_options() -> None:
    shared = {"include_obfuscation": False}
    body: dict[str, Any] = {"stream_options": shared}
    assert request_usage(body) is True
    assert body["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert shared == {"include_obfuscation": False}
    assert request_usage(body) is False  # asked already
    body = {}
    assert request_usage(body) is True and body == {"stream_options": {"include_usage": True}}
    assert request_usage({"stream_options": "yes"}) is False


def test_worst_case_output_and_input_estimate() -> None:
    assert worst_case_output({"max_completion_tokens": 500, "max_tokens": 100}) == 500
    assert worst_case_output({"max_tokens": 100}) == 100
    assert worst_case_output({"max_tokens": True}) is None
    assert worst_case_output({"max_tokens": 0}) is None
    assert worst_case_output({}) is None
    assert [estimate_input_tokens(n) for n in (0, 1, 4, 5, 4000)] == [0, 1, 1, 2, 1000]


def test_output_estimate_counts_events_or_text() -> None:
    assert estimate_output_tokens(0, b"") == 0
    # No chunk to calibrate on: every byte counts.
    assert estimate_output_tokens(900, b": keep-alive\n\n") == 225
    # A chunk a token: one token an event.
    small = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    assert estimate_output_tokens(3 * len(small), small) == 3
    # Batched text: 3 events of a small envelope around 400 bytes of text each.
    big = b'data: {"choices":[{"delta":{"content":"' + b"a" * 400 + b'"}}]}\n\n'
    assert estimate_output_tokens(3 * len(big), big) == 300


def test_usage_in_an_unterminated_last_event_still_counts() -> None:
    raw = RECORDED[0].read_bytes()
    cut = raw.rindex(b"\n\ndata: [DONE]")  # the usage chunk lacks its blank line, and [DONE] never came
    leg = _leg(strip=True)
    out = _relay(leg, [raw[:cut]])
    assert b'"error"' in out and b'"choices":[],"usage"' not in out
    assert leg.usage() == RECORDED_USAGE and not leg.estimated
