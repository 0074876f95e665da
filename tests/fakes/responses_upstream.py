"""A fake OpenAI Responses upstream: a real HTTP server on 127.0.0.1 (aiohttp.web in its own thread).

``POST /v1/responses`` answers like api.openai.com: a ``response`` object, or the typed SSE event sequence
(``response.created``, ``response.in_progress``, ``response.output_item.added``, ``content_part.added``,
``output_text.delta``..., ``output_text.done``, ``content_part.done``, ``output_item.done``,
``response.completed``) with ``sequence_number`` s; function calls stream ``function_call_arguments.delta``/
``done``; reasoning items stream summary parts and carry ``encrypted_content`` when ``include`` asks for it.

Like OpenAI it checks the request: Bearer auth (401), the body against the SDK's request types with unknown
fields rejected (400), tool outputs answering a function call present in ``input``, replayed reasoning whose
encrypted content it issued itself, and no ``temperature``/``top_p`` for a reasoning model that reasons.

What the fake model says: two parallel function calls when tools are offered and the last input is the
user's; a summary of the tool outputs after them; a mention of the parts when an image is sent; else an echo.
With ``reasoning.effort`` set (not "none") a reasoning item comes first. Tests queue special answers with
:meth:`push` (the same :class:`Action` kinds as the chat fake, plus ``failed`` and ``error-event``).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pydantic
from aiohttp import web
from openai.types.responses import response_create_params as params

from tests.fakes.server import Action, FakeServer, Recorded

__all__ = ["Action", "FakeResponses", "Recorded", "strict_request_model"]

_Streaming = pydantic.create_model(
    "_Streaming",
    __config__=pydantic.ConfigDict(extra="forbid"),
    body=(params.ResponseCreateParamsStreaming, ...),
)
_NonStreaming = pydantic.create_model(
    "_NonStreaming",
    __config__=pydantic.ConfigDict(extra="forbid"),
    body=(params.ResponseCreateParamsNonStreaming, ...),
)


def strict_request_model(stream: bool) -> type[pydantic.BaseModel]:
    """The SDK's request type wrapped so unknown fields anywhere are errors, as the API treats them."""
    return _Streaming if stream else _NonStreaming


class FakeResponses(FakeServer):
    def __init__(self, reasoning_models: tuple[str, ...] = ("gpt-5-pro", "gpt-5", "o4-mini")) -> None:
        super().__init__()
        self.reasoning_models = reasoning_models
        #: Bearer keys answered with 401.
        self.rejected_keys: set[str] = set()
        #: Reasoning item id -> the encrypted content issued with it.
        self.issued: dict[str, str] = {}
        self._counter = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{prefix:.*}responses", self._responses)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self.record(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
            return _error(401, "You didn't provide an API key.", "invalid_request_error", None)
        if auth.removeprefix("Bearer ") in self.rejected_keys:
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
        problem = self._check(body)
        if problem is not None:
            return problem
        played = await self.play(request, action := self.next_action())
        if played is not None:
            return played
        response = self._respond(body)
        if not body.get("stream"):
            return web.json_response(response)
        events = stream_events(response)
        if action is not None and action.kind in ("failed", "error-event"):
            events = _failing(events[:2], response, action)
        return await self._stream(request, events, action)

    def _check(self, body: dict[str, Any]) -> web.Response | None:
        try:
            strict_request_model(bool(body.get("stream"))).model_validate({"body": body})
        except pydantic.ValidationError as exc:
            return _invalid(exc)
        items = body.get("input") if isinstance(body.get("input"), list) else []
        calls = {it.get("call_id") for it in items if it.get("type") == "function_call"}
        for it in items:
            if it.get("type") == "function_call_output" and it.get("call_id") not in calls:
                msg = f"No tool call found for function call output with call_id {it.get('call_id')}."
                return _error(400, msg, "invalid_request_error", None, "input")
            if it.get("type") == "reasoning" and self.issued.get(it.get("id", "")) != it.get("encrypted_content"):
                msg = f"The encrypted content for item {it.get('id')} could not be verified."
                return _error(400, msg, "invalid_request_error", "invalid_encrypted_content", "input")
        effort = (body.get("reasoning") or {}).get("effort")
        if body.get("model") in self.reasoning_models and effort != "none":
            for name in ("temperature", "top_p"):
                if name in body:
                    msg = f"Unsupported parameter: '{name}' is not supported with this model."
                    return _error(400, msg, "invalid_request_error", "unsupported_parameter", name)
        return None

    def _respond(self, body: dict[str, Any]) -> dict[str, Any]:
        self._counter += 1
        n = self._counter
        output: list[dict[str, Any]] = []
        reasoning = body.get("reasoning") or {}
        if reasoning.get("effort") not in (None, "none"):
            output.append(self._reasoning_item(n, body))
        text, calls = _reply_for(body)
        status, incomplete = "completed", None
        for i, (name, args) in enumerate(calls):
            output.append(_call_item(f"fc_{n:04d}{i}", f"call_{n}_{i}", name, args))
        if text is not None:
            words = text.split(" ")
            limit = body.get("max_output_tokens")
            if isinstance(limit, int) and len(words) > limit:
                text, status, incomplete = " ".join(words[:limit]), "incomplete", {"reason": "max_output_tokens"}
            output.append(_message_item(f"msg_{n:04d}", text))
        thought = 7 if output and output[0]["type"] == "reasoning" else 0
        out_tokens = (len(text.split(" ")) if text else 0) + 6 * len(calls) + thought
        usage = {
            "input_tokens": 20,
            "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 4},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": thought},
            "total_tokens": 20 + out_tokens,
        }
        return _response_object(f"resp_{n:04d}{secrets.token_hex(8)}", body, output, status, incomplete, usage)

    def _reasoning_item(self, n: int, body: dict[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {"id": f"rs_{n:04d}{secrets.token_hex(6)}", "type": "reasoning", "summary": []}
        if (body.get("reasoning") or {}).get("summary"):
            parts = ["**Planning**\n\nThe user wants an answer.", "Answering now."]
            item["summary"] = [{"type": "summary_text", "text": p} for p in parts]
        if "reasoning.encrypted_content" in (body.get("include") or ()):
            item["encrypted_content"] = "gAAAAA" + secrets.token_urlsafe(48)
            self.issued[item["id"]] = item["encrypted_content"]
        return item

    async def _stream(
        self, request: web.Request, events: list[dict[str, Any]], action: Action | None
    ) -> web.StreamResponse:
        frames = [encode(event) for event in events]
        return await self.stream(request, frames, action, b'event: response.output_text.delta\ndata: {"type":"resp')


def encode(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _error(status: int, message: str, type_: str, code: str | None, param: str | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status=status
    )


def _invalid(exc: pydantic.ValidationError) -> web.Response:
    errors = exc.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 2]
    if unknown:
        name = str(unknown[0]["loc"][1])
        return _error(400, f"Unknown parameter: '{name}'.", "invalid_request_error", "unknown_parameter", name)
    first = errors[0]
    path = ".".join(str(p) for p in first["loc"][1:])
    msg = f"Invalid request ({len(errors)} validation errors), first at '{path}': {first['msg']}."
    return _error(400, msg, "invalid_request_error", "invalid_value", str(first["loc"][1]))


def _reply_for(body: dict[str, Any]) -> tuple[str | None, list[tuple[str, str]]]:
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    last = items[-1] if items else {}
    is_user = last.get("type", "message") == "message" and last.get("role") == "user"
    tools = [t["name"] for t in body.get("tools") or () if t.get("type") == "function"]
    if tools and is_user:
        cities = ("Paris", "Tokyo")
        return None, [(tools[i % len(tools)], json.dumps({"city": c})) for i, c in enumerate(cities)]
    if last.get("type") == "function_call_output":
        outputs = [_output_text(it["output"]) for it in items if it.get("type") == "function_call_output"]
        return "Tool results: " + "; ".join(outputs), []
    content = last.get("content")
    if isinstance(content, list):
        kinds = [part.get("type") for part in content]
        if "input_image" in kinds:
            return f"I received parts: {', '.join(kinds)}", []
        return "Echo: " + "".join(p.get("text", "") for p in content), []
    return f"Echo: {content}", []


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return " ".join(p.get("text", f"[{p.get('type')}]") for p in output)


def _message_item(item_id: str, text: str) -> dict[str, Any]:
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    return {"id": item_id, "type": "message", "status": "completed", "content": [part], "role": "assistant"}


def _call_item(item_id: str, call_id: str, name: str, args: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": "completed",
        "arguments": args,
        "call_id": call_id,
        "name": name,
    }


def _response_object(
    rid: str,
    body: dict[str, Any],
    output: list[dict[str, Any]],
    status: str,
    incomplete: dict[str, Any] | None,
    usage: dict[str, Any],
) -> dict[str, Any]:
    reasoning = body.get("reasoning") or {}
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": body.get("model", "gpt-fake"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def stream_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The typed event sequence OpenAI streams for ``response`` (a finished response object)."""
    start = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
    ]
    for index, item in enumerate(response["output"]):
        events.extend(_item_events(index, item))
    final = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    events.append({"type": final, "response": response})
    return [{**ev, "sequence_number": n} for n, ev in enumerate(events)]


def _item_events(index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
    ref = {"item_id": item["id"], "output_index": index}
    kind = item["type"]
    if kind == "reasoning":
        added = {"id": item["id"], "type": "reasoning", "summary": []}
        events = [{"type": "response.output_item.added", "output_index": index, "item": added}]
        for si, part in enumerate(item["summary"]):
            sref = {**ref, "summary_index": si}
            empty = {"type": "summary_text", "text": ""}
            events.append({"type": "response.reasoning_summary_part.added", **sref, "part": empty})
            events.extend(
                {"type": "response.reasoning_summary_text.delta", **sref, "delta": d} for d in _pieces(part["text"])
            )
            events.append({"type": "response.reasoning_summary_text.done", **sref, "text": part["text"]})
            events.append({"type": "response.reasoning_summary_part.done", **sref, "part": part})
    elif kind == "message":
        added = {**item, "status": "in_progress", "content": []}
        cref = {**ref, "content_index": 0}
        text = item["content"][0]["text"]
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        events = [
            {"type": "response.output_item.added", "output_index": index, "item": added},
            {"type": "response.content_part.added", **cref, "part": empty},
        ]
        events.extend({"type": "response.output_text.delta", **cref, "delta": d, "logprobs": []} for d in _pieces(text))
        events.append({"type": "response.output_text.done", **cref, "text": text, "logprobs": []})
        events.append({"type": "response.content_part.done", **cref, "part": item["content"][0]})
    else:
        added = {**item, "status": "in_progress", "arguments": ""}
        args = item["arguments"]
        events = [{"type": "response.output_item.added", "output_index": index, "item": added}]
        events.extend(
            {"type": "response.function_call_arguments.delta", **ref, "delta": args[i : i + 7]}
            for i in range(0, len(args), 7)
        )
        events.append({"type": "response.function_call_arguments.done", **ref, "arguments": args})
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    return events


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _failing(head: list[dict[str, Any]], response: dict[str, Any], action: Action) -> list[dict[str, Any]]:
    error = action.body or {"code": "server_error", "message": "The server had an error processing your request."}
    if action.kind == "error-event":
        tail = {"type": "error", "code": error.get("code"), "message": error["message"], "param": None}
    else:
        failed = {**response, "status": "failed", "output": [], "usage": None, "error": error}
        tail = {"type": "response.failed", "response": failed}
    return [*head, {**tail, "sequence_number": len(head)}]
