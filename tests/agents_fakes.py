"""The fake upstreams the real agent programs are driven against (see tests/agents_netns.py), and the
``models.json`` entry that declares each one to Switchboard.

They are the project's fakes plus one scripted move: when the conversation's last turn is the user's and its
text holds ``TOOL <name> <json arguments>`` and the request offers a tool of that name, the model calls it
with those arguments (the stock fakes call the first tools offered with ``{"city": ...}``, which an agent's
shell tool refuses). After the tool's result comes back the stock fakes summarise it (``Tool results: ...``),
so the program's final answer holds the command's output.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from tests.fakes.anthropic_upstream import FakeAnthropic, error_body
from tests.fakes.openai_upstream import FakeOpenAI, _chunk
from tests.fakes.server import Action, FakeServer, Recorded, read_body

__all__ = ["FAKES", "ScriptedAnthropic", "ScriptedOpenAI", "provider_entry", "scripted_call"]

_CONTEXT_BETA = "context-management-2025-06-27"
_MARKER = re.compile(r"TOOL (\S+) (\{.*\})")


def scripted_call(text: str, offered: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The tool call ``text`` asks for, when the tool is among ``offered``."""
    found = _MARKER.search(text)
    if found is None or found.group(1) not in offered:
        return None
    return found.group(1), json.loads(found.group(2))


class ScriptedOpenAI(FakeOpenAI):
    """OpenAI chat completions; a scripted tool call is streamed as the real API streams one."""

    async def record(self, request: web.Request) -> Any:
        body = await super().record(request)
        call = _openai_call(body) if isinstance(body, dict) else None
        if call is not None and body.get("stream"):
            # Played by FakeOpenAI._chat as the answer to this request (it takes the next action after recording).
            self.actions.appendleft(Action("raw", chunks=_openai_call_frames(body, *call)))
        return body


def _openai_call(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    messages = body.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        return None
    content = messages[-1].get("content")
    text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [])
    return scripted_call(text, [t["function"]["name"] for t in body.get("tools") or []])


def _openai_call_frames(body: dict[str, Any], name: str, arguments: dict[str, Any]) -> list[bytes]:
    model = body.get("model", "gpt-fake")
    call = {"index": 0, "id": "call_scripted", "type": "function", "function": {"name": name, "arguments": ""}}
    args = json.dumps(arguments)
    events = [
        _chunk({"role": "assistant", "content": None}, None, model),
        _chunk({"tool_calls": [call]}, None, model),
        *(
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 9]}}]}, None, model)
            for i in range(0, len(args), 9)
        ),
        _chunk({}, "tool_calls", model),
    ]
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = _chunk({}, None, model)
        usage["choices"] = []
        usage["usage"] = {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}
        events.append(usage)
    return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


class ScriptedAnthropic(FakeAnthropic):
    """Anthropic Messages; a scripted tool call replaces the stock answer (after any thinking block).

    Like Anthropic, it takes ``context_management`` (which Claude Code sends on every turn) when the
    ``anthropic-beta`` header names its beta, and refuses it otherwise; the stock fake always refuses it.
    """

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        beta = request.headers.get("anthropic-beta", "")
        if isinstance(body, dict) and "context_management" in body and _CONTEXT_BETA not in beta:
            self.requests.append(
                Recorded("POST", request.path, {k.lower(): v for k, v in request.headers.items()}, body)
            )
            message = f"context_management: requires the anthropic-beta header {_CONTEXT_BETA}"
            return web.json_response(error_body("invalid_request_error", message), status=400)
        return await super()._messages(request)

    def _check_body(self, body: Any) -> web.Response | None:
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k != "context_management"}
        return super()._check_body(body)

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        message = super()._answer(body)
        last = body["messages"][-1]
        blocks = [{"type": "text", "text": last["content"]}] if isinstance(last["content"], str) else last["content"]
        text = " ".join(b.get("text", "") for b in blocks if b["type"] == "text")
        call = scripted_call(text, [t["name"] for t in body.get("tools") or []]) if last["role"] == "user" else None
        if call is None:
            return message
        thinking = [b for b in message["content"] if b["type"] == "thinking"]
        use = {"type": "tool_use", "id": "toolu_scripted", "name": call[0], "input": call[1]}
        return {**message, "content": [*thinking, use], "stop_reason": "tool_use"}


FAKES: dict[str, type[FakeServer]] = {"openai": ScriptedOpenAI, "anthropic": ScriptedAnthropic}


def provider_entry(name: str, url: str) -> tuple[str, dict[str, Any]] | None:
    """``(provider id, models.json entry)`` for the fake ``name`` listening at ``url``."""
    if name == "openai":
        return "local", {"baseUrl": url + "/v1", "api": "openai-completions", "apiKey": "k", "models": [{"id": "m"}]}
    if name == "anthropic":
        # The built-in provider at the fake; its key comes from ANTHROPIC_API_KEY in serve's environment.
        return "anthropic", {"baseUrl": url}
    return None
