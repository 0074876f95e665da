"""OpenAI chat-completions request → canonical :class:`Request` (the translated path only).

Raises :class:`InvalidRequest` naming the parameter and the provider for what the target cannot honour
(``n > 1``, ``logprobs``, audio), and for malformed messages. Sampling knobs with no equivalent
upstream (``seed``, penalties, ``logit_bias``) are dropped: they tune, not change, the answer's meaning.

Thinking from earlier turns comes back on assistant messages as ``reasoning_content`` (text only) or
``thinking_blocks`` (with the provider's signature or opaque data, exactly as Switchboard returned them);
Gemini thought signatures come back as ``thought_signature`` on a tool call.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from providers.canonical import (
    Block,
    Image,
    Message,
    Request,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from providers.errors import InvalidRequest

__all__ = ["decode_request"]

_DROPPED = frozenset(
    {
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "store",
        "metadata",
        "service_tier",
        "modalities",
        "prediction",
        "stream_options",
        "n",
    }
)
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "reasoning_effort",
        "thinking",
        "response_format",
        "stream",
        "user",
        "prompt_cache_key",
        "logprobs",
        "top_logprobs",
        "audio",
        "functions",
        "function_call",
    }
)


def decode_request(body: dict[str, Any], upstream_model: str, provider_name: str) -> Request:
    _reject_unsupported(body, provider_name)
    system: list[Text] = []
    messages: list[Message] = []
    tool_names: dict[str, str] = {}
    for i, raw in enumerate(body["messages"]):
        if not isinstance(raw, dict):
            raise InvalidRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        _convert_message(raw, i, system, messages, tool_names, provider_name)
    stream_options = body.get("stream_options") or {}
    return Request(
        model=upstream_model,
        messages=messages,
        system=system,
        tools=_convert_tools(body.get("tools")),
        tool_choice=_convert_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"),
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=_convert_stop(body.get("stop")),
        reasoning_effort=body.get("reasoning_effort"),
        thinking_budget=_thinking_budget(body.get("thinking")),
        response_format=body.get("response_format"),
        stream=body.get("stream") is True,
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
        session_id=body.get("prompt_cache_key") if isinstance(body.get("prompt_cache_key"), str) else None,
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        extra={k: v for k, v in body.items() if k not in _KNOWN and k not in _DROPPED},
    )


def _reject_unsupported(body: dict[str, Any], provider: str) -> None:
    n = body.get("n")
    if n not in (None, 1):
        raise InvalidRequest(f"n={n} is not supported by {provider}; request one choice at a time", param="n")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise InvalidRequest(f"logprobs is not supported by {provider}", param="logprobs")
    if body.get("audio") is not None or "audio" in (body.get("modalities") or ()):
        raise InvalidRequest(f"audio output is not supported by {provider}", param="audio")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise InvalidRequest("the deprecated 'functions' parameter is not translated; use 'tools'", param="functions")


def _convert_message(
    raw: dict[str, Any], i: int, system: list[Text], out: list[Message], tool_names: dict[str, str], provider: str
) -> None:
    role = raw.get("role")
    content = raw.get("content")
    if role in ("system", "developer"):
        system.extend(b for b in _convert_content(content, i, provider) if isinstance(b, Text))
    elif role == "user":
        out.append(Message("user", _convert_content(content, i, provider)))
    elif role == "assistant":
        out.append(Message("assistant", _convert_assistant(raw, i, tool_names)))
    elif role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str):
            raise InvalidRequest(f"messages[{i}].tool_call_id is required for a tool message", param=f"messages[{i}]")
        parts = [b for b in _convert_content(content, i, provider) if isinstance(b, Text | Image)]
        result = ToolResult(call_id, parts, is_error=bool(raw.get("is_error")), name=tool_names.get(call_id))
        out.append(Message("tool", [result]))
    else:
        raise InvalidRequest(
            f"messages[{i}].role must be system, developer, user, assistant or tool, not {role!r}",
            param=f"messages[{i}].role",
        )


def _convert_content(content: Any, i: int, provider: str) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"messages[{i}].content must be a string or an array", param=f"messages[{i}].content")
    blocks: list[Block] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"messages[{i}].content[{j}]"
        if kind == "text" or kind == "refusal":
            blocks.append(Text(str(part.get("text") or part.get("refusal") or ""), part.get("cache_control")))
        elif kind == "image_url":
            blocks.append(_convert_image(part.get("image_url"), where))
        elif kind == "input_audio":
            raise InvalidRequest(f"audio input is not supported by {provider}", param=where)
        else:
            raise InvalidRequest(f"{where}: content part type {kind!r} is not supported by {provider}", param=where)
    return blocks


def _convert_image(spec: Any, where: str) -> Image:
    url = spec.get("url") if isinstance(spec, dict) else spec
    detail = spec.get("detail") if isinstance(spec, dict) else None
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}.image_url.url is required", param=where)
    if url.startswith("data:"):
        header, sep, data = url.partition(",")
        if not sep or ";base64" not in header:
            raise InvalidRequest(f"{where}: image data URLs must be base64 ('data:image/png;base64,...')", param=where)
        try:
            base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"{where}: the image data is not valid base64", param=where) from exc
        return Image(media_type=header[5:].split(";", 1)[0] or "image/png", data=data, detail=detail)
    if url.startswith(("http://", "https://")):
        return Image(url=url, detail=detail)
    raise InvalidRequest(f"{where}: image_url must be an http(s) URL or a base64 data URL", param=where)


def _convert_assistant(raw: dict[str, Any], i: int, tool_names: dict[str, str]) -> list[Block]:
    blocks: list[Block] = []
    thinking_blocks = raw.get("thinking_blocks")
    if isinstance(thinking_blocks, list) and thinking_blocks:
        blocks.extend(_convert_thinking_block(tb) for tb in thinking_blocks if isinstance(tb, dict))
    elif isinstance(raw.get("reasoning_content"), str) and raw["reasoning_content"]:
        blocks.append(Thinking(raw["reasoning_content"]))
    content = raw.get("content")
    if isinstance(content, str):
        if content:
            blocks.append(Text(content))
    elif isinstance(content, list):
        blocks.extend(_convert_content(content, i, "this provider"))
    for j, tc in enumerate(raw.get("tool_calls") or ()):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(tc.get("id"), str) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(
                f"messages[{i}].tool_calls[{j}] needs id, function.name and function.arguments",
                param=f"messages[{i}].tool_calls[{j}]",
            )
        tool_names[tc["id"]] = fn["name"]
        args = fn.get("arguments")
        blocks.append(
            ToolCall(
                tc["id"], fn["name"], args if isinstance(args, str) and args else "{}", tc.get("thought_signature")
            )
        )
    return blocks


def _convert_thinking_block(tb: dict[str, Any]) -> Thinking:
    text = tb.get("thinking") or tb.get("text") or ""
    return Thinking(
        text=str(text),
        signature=tb.get("signature"),
        redacted=tb.get("data"),
        source=tb.get("provider"),
        item_id=tb.get("id"),
    )


def _convert_tools(tools: Any) -> list[Tool]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    out = []
    for k, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(
                f"tools[{k}] must be {{'type': 'function', 'function': {{'name': ...}}}}", param=f"tools[{k}]"
            )
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        out.append(Tool(fn["name"], fn.get("description"), params, fn.get("strict"), tool.get("cache_control")))
    return out


def _convert_tool_choice(choice: Any) -> ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ToolChoice(choice)
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return ToolChoice("tool", name)
    raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or a named function", param="tool_choice")


def _convert_stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")


def _thinking_budget(thinking: Any) -> int | None:
    if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
        return int(thinking["budget_tokens"])
    return None
