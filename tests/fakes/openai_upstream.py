"""A fake OpenAI-compatible upstream: a real HTTP server on 127.0.0.1 (aiohttp.web in its own thread).

It answers like api.openai.com's chat completions: ``chat.completion`` objects, or ``chat.completion.chunk``
SSE events (role first, content or tool-call deltas, a finish chunk, a usage chunk with empty ``choices``
when ``stream_options.include_usage`` is set, then ``data: [DONE]``), and OpenAI error envelopes.

Every request is recorded (path, headers, JSON body). Tests queue special answers with :meth:`push`:
an error status, a hang, a stream that breaks off, raw SSE bytes, a slow endless stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from tests.fakes.server import SSE, Action, FakeServer, Recorded

__all__ = ["Action", "FakeOpenAI", "Recorded"]

#: How many events a ``slow`` answer streams at most, so a test can never hang the suite.
_SLOW_EVENTS = 400


class FakeOpenAI(FakeServer):
    def __init__(self, models: list[str] | None = None) -> None:
        super().__init__()
        self.models = models or ["gpt-fake", "gpt-fake-mini"]
        #: Bearer keys answered with 401 (to test key rotation).
        self.rejected_keys: set[str] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{prefix:.*}chat/completions", self._chat)
        app.router.add_get("/{prefix:.*}models", self._models)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Recorded("GET", request.path, dict(request.headers), None))
        played = await self.play(request, self.next_action("error"))
        if played is not None:
            return played
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") in self.rejected_keys:
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        played = await self.play(request, action := self.next_action())
        if played is not None:
            return played
        if action is not None and action.kind == "slow":
            return await self.stream(request, _ticks(), action, b"", SSE)
        if isinstance(body, dict) and body.get("stream"):
            frames = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in _stream_events(body)]
            # Half an event when the action breaks the stream.
            return await self.stream(request, [*frames, b"data: [DONE]\n\n"], action, b'data: {"id":"chatcmpl-x","obj')
        return web.json_response(_completion(body))


def _ticks() -> Iterator[bytes]:
    for i in range(_SLOW_EVENTS):
        yield b"data: " + json.dumps(_chunk({"content": f"tick {i} "}, None)).encode() + b"\n\n"


def _error(status: int, message: str, type_: str, code: str | None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status)


def _reply_for(body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """What the fake model says: tool calls when tools are offered and the last turn is the user's."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if body.get("tools") and last.get("role") == "user":
        names = [t["function"]["name"] for t in body["tools"]]
        calls = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": names[i % len(names)], "arguments": json.dumps({"city": city})},
            }
            for i, city in enumerate(("Paris", "Tokyo"))
        ]
        return None, calls
    if last.get("role") == "tool":
        results = [m["content"] for m in messages if m.get("role") == "tool"]
        return "Tool results: " + "; ".join(str(r) for r in results), []
    content = last.get("content")
    if isinstance(content, list):
        kinds = [part.get("type") for part in content]
        return f"I received parts: {', '.join(kinds)}", []
    return f"Echo: {content}", []


def _usage(prompt: int = 12, completion: int = 9) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _completion(body: Any) -> dict[str, Any]:
    text, calls = _reply_for(body if isinstance(body, dict) else {})
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "gpt-fake") if isinstance(body, dict) else "gpt-fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ],
        "usage": _usage(),
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }


def _chunk(delta: dict[str, Any], finish: str | None, model: str = "gpt-fake") -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _stream_events(body: dict[str, Any]) -> list[dict[str, Any]]:
    model = body.get("model", "gpt-fake")
    text, calls = _reply_for(body)
    events = [_chunk({"role": "assistant", "content": "", "refusal": None}, None, model)]
    if calls:
        for i, call in enumerate(calls):
            events.append(
                _chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    },
                    None,
                    model,
                )
            )
            args = call["function"]["arguments"]
            for j in range(0, len(args), 7):
                events.append(
                    _chunk(
                        {"tool_calls": [{"index": i, "function": {"arguments": args[j : j + 7]}}]},
                        None,
                        model,
                    )
                )
    else:
        assert text is not None
        for word in text.split(" "):
            events.append(_chunk({"content": word + " "}, None, model))
    events.append(_chunk({}, "tool_calls" if calls else "stop", model))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage_chunk = _chunk({}, None, model)
        usage_chunk["choices"] = []
        usage_chunk["usage"] = _usage()
        events.append(usage_chunk)
    return events
