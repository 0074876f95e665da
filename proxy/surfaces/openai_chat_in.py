"""OpenAI chat-completions request → canonical :class:`Request` (the translated path only).

The body is first typed by :func:`~proxy.surfaces.openai_chat_types.validate` (a wrong type anywhere is a
400 naming its path), so the converters below meet only declared types. Raises :class:`InvalidRequest`
naming the parameter and the provider for what the target cannot honour (``n > 1``, ``logprobs``, audio output,
audio or file parts) and for image URLs it cannot send. ``seed``, the penalties, ``service_tier`` and
``metadata`` travel in the canonical request; each wire module maps them or drops them (its docstring
says which). ``logit_bias``, ``store`` and ``prediction`` are dropped: they tune, not change, the answer.

Thinking from earlier turns comes back on assistant messages as ``reasoning_content`` (text only) or
``thinking_blocks`` (with the provider's signature or opaque data and the ``provider`` tag that issued
it, exactly as Switchboard returned them); Gemini thought signatures come back as ``thought_signature``
(with ``thought_signature_provider``) on a tool call. The tags decide where a signature may be replayed.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

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

from .openai_chat_types import (
    AssistantMessage,
    ChatMessage,
    ChatRequest,
    ContentPart,
    DeveloperMessage,
    ImagePart,
    InputAudioPart,
    NamedToolChoice,
    RefusalPart,
    SystemMessage,
    TextPart,
    ThinkingBlockIn,
    ToolSpec,
    UserMessage,
    validate,
)

__all__ = ["decode_request"]

_DROPPED = frozenset({"logit_bias", "store", "modalities", "prediction", "stream_options"})
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
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "service_tier",
        "metadata",
    }
)
#: What does not go to ``Request.extra``: one membership test per body key.
_NOT_EXTRA = _KNOWN | _DROPPED


def decode_request(body: dict[str, Any], upstream_model: str, provider_name: str) -> Request:
    """``body`` (from :func:`decode_body`) as a canonical request; raises :class:`InvalidRequest`."""
    req = validate(body)
    _reject_unsupported(req, provider_name)
    system: list[Text] = []
    messages: list[Message] = []
    tool_names: dict[str, str] = {}
    for i, msg in enumerate(req.messages):
        _convert_message(msg, i, system, messages, tool_names, provider_name)
    return Request(
        model=upstream_model,
        messages=messages,
        system=system,
        tools=_convert_tools(req.tools),
        tool_choice=_convert_tool_choice(req.tool_choice),
        parallel_tool_calls=req.parallel_tool_calls,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        stop=[req.stop] if isinstance(req.stop, str) else list(req.stop or ()),
        reasoning_effort=req.reasoning_effort,
        thinking_budget=req.thinking.budget_tokens if req.thinking is not None else None,
        # The dict the client sent, now known to have the declared shape (wire modules read it as such).
        response_format=body.get("response_format"),
        stream=req.stream is True,
        include_usage=bool(req.stream_options is not None and req.stream_options.include_usage),
        session_id=req.prompt_cache_key,
        user=req.user,
        service_tier=req.service_tier,
        metadata=req.metadata,
        extra={k: v for k, v in body.items() if k not in _NOT_EXTRA},
    )


def _reject_unsupported(req: ChatRequest, provider: str) -> None:
    if req.n not in (None, 1):
        raise InvalidRequest(f"n={req.n} is not supported by {provider}; request one choice at a time", param="n")
    if req.logprobs or req.top_logprobs:
        raise InvalidRequest(f"logprobs is not supported by {provider}", param="logprobs")
    if req.audio is not None or "audio" in (req.modalities or ()):
        raise InvalidRequest(f"audio output is not supported by {provider}", param="audio")
    if req.functions is not None or req.function_call is not None:
        raise InvalidRequest("the deprecated 'functions' parameter is not translated; use 'tools'", param="functions")


def _convert_message(
    msg: ChatMessage, i: int, system: list[Text], out: list[Message], tool_names: dict[str, str], provider: str
) -> None:
    # The commonest kind first (the kinds are disjoint).
    if isinstance(msg, UserMessage):
        out.append(Message("user", _convert_content(msg.content, i, provider)))
    elif isinstance(msg, SystemMessage | DeveloperMessage):
        system.extend(b for b in _convert_content(msg.content, i, provider) if isinstance(b, Text))
    elif isinstance(msg, AssistantMessage):
        out.append(Message("assistant", _convert_assistant(msg, i, tool_names)))
    else:
        call_id = msg.tool_call_id
        parts = [b for b in _convert_content(msg.content, i, provider) if isinstance(b, Text | Image)]
        result = ToolResult(call_id, parts, is_error=bool(msg.is_error), name=tool_names.get(call_id))
        out.append(Message("tool", [result]))


def _convert_content(content: str | list[ContentPart] | None, i: int, provider: str) -> list[Block]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    blocks: list[Block] = []
    for j, part in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        if isinstance(part, TextPart):
            blocks.append(Text(part.text, part.cache_control))
        elif isinstance(part, RefusalPart):
            blocks.append(Text(part.refusal))
        elif isinstance(part, ImagePart):
            blocks.append(_convert_image(part, where))
        elif isinstance(part, InputAudioPart):
            raise InvalidRequest(f"audio input is not supported by {provider}", param=where)
        else:
            raise InvalidRequest(f"{where}: content part type 'file' is not supported by {provider}", param=where)
    return blocks


def _convert_image(part: ImagePart, where: str) -> Image:
    spec = part.image_url
    url, detail = (spec, None) if isinstance(spec, str) else (spec.url, spec.detail)
    if not url:
        raise InvalidRequest(f"{where}.image_url.url is required", param=f"{where}.image_url.url")
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


def _convert_assistant(msg: AssistantMessage, i: int, tool_names: dict[str, str]) -> list[Block]:
    blocks: list[Block] = []
    if msg.thinking_blocks:
        blocks.extend(_convert_thinking_block(tb) for tb in msg.thinking_blocks)
    elif msg.reasoning_content:
        blocks.append(Thinking(msg.reasoning_content))
    if isinstance(msg.content, str):
        if msg.content:
            blocks.append(Text(msg.content))
    elif msg.content is not None:
        blocks.extend(_convert_content(msg.content, i, "this provider"))
    for tc in msg.tool_calls or ():
        tool_names[tc.id] = tc.function.name
        args = tc.function.arguments
        blocks.append(
            ToolCall(tc.id, tc.function.name, args or "{}", tc.thought_signature, tc.thought_signature_provider)
        )
    return blocks


def _convert_thinking_block(tb: ThinkingBlockIn) -> Thinking:
    return Thinking(
        text=tb.thinking or tb.text or "",
        signature=tb.signature,
        redacted=tb.data,
        source=tb.provider,
        item_id=tb.id,
    )


def _convert_tools(tools: list[ToolSpec] | None) -> list[Tool]:
    out = []
    for tool in tools or ():
        fn = tool.function
        params = fn.parameters or {"type": "object", "properties": {}}
        out.append(Tool(fn.name, fn.description, params, fn.strict, tool.cache_control))
    return out


def _convert_tool_choice(choice: Literal["auto", "none", "required"] | NamedToolChoice | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, NamedToolChoice):
        return ToolChoice("tool", choice.function.name)
    return ToolChoice(choice)
