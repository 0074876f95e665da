"""A fake Anthropic Messages API: a real HTTP server on 127.0.0.1 (aiohttp.web in its own thread).

``POST /v1/messages`` answers like api.anthropic.com with ``anthropic-version: 2023-06-01``: a ``message``
object, or with ``stream: true`` the named SSE events (message_start, content_block_start, ping,
content_block_delta..., content_block_stop, message_delta with usage, message_stop), and Anthropic error
bodies (``{"type": "error", "error": {"type", "message"}}``).

Requests are checked as Anthropic checks them: the body against the ``anthropic`` SDK's request types
(:func:`validate_request`, unknown fields refused), tool_use/tool_result pairing, thinking budgets,
at most four cache breakpoints, thinking signatures it issued itself; headers ``anthropic-version`` and
``x-api-key`` or ``Authorization: Bearer``.

What the fake model says: two parallel tool_use blocks when tools are offered and the last user turn is
not tool results; a summary of the tool results when it is; a note about an image when one is present;
else an echo of the last user text. With ``thinking`` on, a signed thinking block comes first.

Every request is recorded (path, headers, JSON body); :meth:`FakeAnthropic.push` queues special answers:
the kinds every fake shares (:class:`tests.fakes.server.FakeServer`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pydantic
from aiohttp import web
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming, MessageCreateParamsStreaming

from tests.fakes.server import Action, FakeServer, Recorded, read_body

__all__ = ["Action", "FakeAnthropic", "Recorded", "error_body", "validate_request"]

_NON_STREAMING = pydantic.TypeAdapter(MessageCreateParamsNonStreaming)
_STREAMING = pydantic.TypeAdapter(MessageCreateParamsStreaming)
#: Accepted by API version 2023-06-01 though the 2.x SDK (which targets a later version) dropped them.
_SAMPLING = ("temperature", "top_p", "top_k")
MODEL_VERSION = "-20250929"


def validate_request(body: Any) -> list[str]:
    """What Anthropic would refuse in this request body, by the SDK's request types (empty: valid).

    The SDK types are TypedDicts with lazily validated iterables and ignored extra keys, so the validated
    value is materialized and compared with the input to find unknown fields.
    """
    if not isinstance(body, dict):
        return ["body: must be a JSON object"]
    errors = []
    for name in _SAMPLING:
        value = body.get(name)
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= (500 if name == "top_k" else 1)):
            errors.append(f"{name}: out of range")
    typed = {k: v for k, v in body.items() if k not in _SAMPLING}
    adapter = _STREAMING if body.get("stream") is True else _NON_STREAMING
    try:
        validated = _materialize(adapter.validate_python(typed))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        return [*errors, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"]
    return errors + list(_extra_fields(typed, validated, ""))


def _materialize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _materialize(v) for k, v in value.items()}
    if isinstance(value, list | Iterator):
        return [_materialize(v) for v in value]
    return value


def _extra_fields(given: Any, validated: Any, path: str) -> Iterator[str]:
    if isinstance(given, dict) and isinstance(validated, pydantic.BaseModel):
        yield f"{path or 'body'}: not a request block ({type(validated).__name__})"
    elif isinstance(given, dict) and isinstance(validated, dict):
        for key, value in given.items():
            where = f"{path}.{key}" if path else key
            if key not in validated:
                yield f"{where}: Extra inputs are not permitted"
            else:
                yield from _extra_fields(value, validated[key], where)
    elif isinstance(given, list) and isinstance(validated, list):
        for i, (a, b) in enumerate(zip(given, validated, strict=False)):
            yield from _extra_fields(a, b, f"{path}.{i}")


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_fake0123"}


def sign(thinking: str) -> str:
    return "sig_" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


class FakeAnthropic(FakeServer):
    def __init__(self, api_key: str = "sk-ant-test") -> None:
        super().__init__()
        self.api_key = api_key
        self._seen_prefixes: set[str] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Recorded("POST", request.path, headers, body))
        refused = self._check_headers(request) or self._check_body(body)
        if refused is not None:
            return refused
        played = await self.play(request, action := self.next_action())
        if played is not None:
            return played
        message = self._answer(body)
        if body.get("stream"):
            torn = b'event: content_block_delta\ndata: {"type":"content_bl'
            return await self.stream(request, sse_frames(message), action, torn)
        return web.json_response(message, headers={"request-id": "req_fake0123"})

    def _check_headers(self, request: web.Request) -> web.Response | None:
        if request.headers.get("anthropic-version") != "2023-06-01":
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not key:
            return _error(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        return None

    def _check_body(self, body: Any) -> web.Response | None:
        problems = validate_request(body) or _semantic_problems(body)
        return _error(400, "invalid_request_error", problems[0]) if problems else None

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        last = messages[-1]["content"]
        last_blocks = [{"type": "text", "text": last}] if isinstance(last, str) else list(last)
        content: list[dict[str, Any]] = []
        if (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
            thought = f"The user sent {len(messages)} turn(s); I will answer plainly."
            content.append({"type": "thinking", "thinking": thought, "signature": sign(thought)})
        results = [b for b in last_blocks if b["type"] == "tool_result"]
        if body.get("tools") and not results and body.get("tool_choice", {}).get("type") != "none":
            names = [t["name"] for t in body["tools"]]
            for i, city in enumerate(("Paris", "Tokyo")):
                tool_input = {"city": city}
                content.append(
                    {"type": "tool_use", "id": f"toolu_fake{i}", "name": names[i % len(names)], "input": tool_input}
                )
            stop = "tool_use"
        else:
            content.append({"type": "text", "text": _reply_text(last_blocks, results)})
            stop = "end_turn"
        return {
            "id": "msg_fake0123",
            "type": "message",
            "role": "assistant",
            "model": body["model"] + MODEL_VERSION,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": self._usage(body, content),
        }

    def _usage(self, body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, Any]:
        cached = "cache_control" in json.dumps(body)
        prefix = json.dumps(body.get("system"))
        hit = cached and prefix in self._seen_prefixes
        if cached:
            self._seen_prefixes.add(prefix)
        return {
            "input_tokens": 21,
            "cache_creation_input_tokens": 1500 if cached and not hit else 0,
            "cache_read_input_tokens": 1500 if hit else 0,
            "output_tokens": 5 + 3 * len(content),
            "service_tier": "standard",
        }


def sse_frames(message: dict[str, Any]) -> Iterator[bytes]:
    """The named SSE events of :func:`stream_events`, framed."""
    for name, data in stream_events(message):
        yield f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def stream_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The SSE events Anthropic sends for ``message``, in order."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        empty = {"text": ""} if kind == "text" else {"thinking": "", "signature": ""} if kind == "thinking" else {}
        opened = {**block, **empty, "input": {}} if kind == "tool_use" else {**block, **empty}
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": opened}
        if index == 0:
            yield "ping", {"type": "ping"}
        for delta in _deltas(block):
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield "message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage["output_tokens"]}}
    yield "message_stop", {"type": "message_stop"}


def _deltas(block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if block["type"] == "text":
        words = block["text"].split(" ")
        for i, word in enumerate(words):
            yield {"type": "text_delta", "text": word if i == len(words) - 1 else word + " "}
    elif block["type"] == "thinking":
        yield {"type": "thinking_delta", "thinking": block["thinking"]}
        yield {"type": "signature_delta", "signature": block["signature"]}
    elif block["type"] == "tool_use":
        args = json.dumps(block["input"])
        for i in range(0, len(args), 7):
            yield {"type": "input_json_delta", "partial_json": args[i : i + 7]}


def _reply_text(last_blocks: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    if results:
        return "Tool results: " + "; ".join(_result_text(r) for r in results)
    images = [b for b in last_blocks if b["type"] == "image"]
    if images:
        source = images[0]["source"]
        return f"I see an image ({source.get('media_type') or source.get('url')})"
    texts = [b["text"] for b in last_blocks if b["type"] == "text"]
    return "Echo: " + " ".join(texts)


def _result_text(result: dict[str, Any]) -> str:
    content = result.get("content", "")
    if isinstance(content, str):
        return content
    return " ".join(c.get("text", "[image]") for c in content)


def _semantic_problems(body: dict[str, Any]) -> list[str]:
    """The request rules Anthropic enforces beyond the schema."""
    problems: list[str] = []
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking["budget_tokens"]
        if budget < 1024 or budget >= body["max_tokens"]:
            problems.append("thinking.budget_tokens: must be >= 1024 and less than max_tokens")
        if any(body.get(k) is not None for k in _SAMPLING):
            problems.append("temperature/top_p/top_k may not be set when thinking is enabled")
    breakpoints = json.dumps(body).count('"cache_control"')
    if breakpoints > 4:
        problems.append(f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}.")
    messages = body["messages"]
    for i, turn in enumerate(messages):
        blocks = turn["content"] if isinstance(turn["content"], list) else []
        if turn["role"] == "user":
            previous = messages[i - 1]["content"] if i > 0 and messages[i - 1]["role"] == "assistant" else []
            known = {b["id"] for b in previous if isinstance(b, dict) and b["type"] == "tool_use"}
            problems += [
                f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {b['tool_use_id']}"
                for b in blocks
                if b["type"] == "tool_result" and b["tool_use_id"] not in known
            ]
        if turn["role"] == "assistant":
            problems += _check_tool_pairing(i, blocks, messages[i + 1] if i + 1 < len(messages) else None)
            problems += [
                f"messages.{i}.content: Invalid `signature` in `thinking` block"
                for b in blocks
                if b["type"] == "thinking" and b["signature"] != sign(b["thinking"])
            ]
    return problems


def _check_tool_pairing(i: int, blocks: list[dict[str, Any]], following: dict[str, Any] | None) -> list[str]:
    uses = [b["id"] for b in blocks if b["type"] == "tool_use"]
    if not uses:
        return []
    answered = []
    if following is not None and isinstance(following["content"], list):
        answered = [b["tool_use_id"] for b in following["content"] if b["type"] == "tool_result"]
    missing = [u for u in uses if u not in answered]
    if missing:
        return [
            f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
            + ", ".join(missing)
        ]
    return []


def _error(status: int, type_: str, message: str) -> web.Response:
    return web.json_response(error_body(type_, message), status=status, headers={"request-id": "req_fake0123"})
