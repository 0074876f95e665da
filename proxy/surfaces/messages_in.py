"""Anthropic Messages request → canonical :class:`Request` (the translated path, and token estimates).

The body is typed first (:func:`~.messages_types.validate`: a wrong type is a 400 naming its path).
Mapping:

* ``system`` (string or text blocks) → ``Request.system``; ``cache_control`` stays on its block.
* A user turn's ``tool_result`` blocks become one ``tool`` message (before the rest of the turn, as
  Anthropic orders them); ``tool_use`` → :class:`ToolCall` with its input as JSON text.
* ``document`` blocks: plain-text and content sources become text (titled); base64 PDFs become an
  :class:`Image` with ``media_type`` ``application/pdf`` (Gemini and Bedrock read it, others refuse it
  naming the format); URL documents become a text link.
* ``thinking`` / ``redacted_thinking``: a signature Switchboard wrapped (:func:`~.messages_out.
  unwrap_signature`, set on answers from non-Anthropic APIs) is unwrapped with its issuer, so each wire
  module replays it only where it was issued (:mod:`providers.wire.replay`); a bare Anthropic signature
  has no issuer known here and is never replayed elsewhere (its text may be, where the API takes text).
  A wrapped signature that belonged to a tool call (a Gemini thought signature) goes back on that call.
* ``thinking.budget_tokens`` → ``thinking_budget`` and an effort; adaptive thinking takes
  ``output_config.effort``. ``max_tokens`` is capped at the target model's output limit (Claude Code
  asks 32000, more than most non-Claude models allow).
* ``stop_sequences`` → ``stop``; ``metadata.user_id`` → ``user``; ``tool_choice`` and
  ``disable_parallel_tool_use`` map directly; ``top_k`` travels in ``extra``.
* A hosted ``web_search_*`` tool sets ``Request.web_search`` (Gemini adds its own search tool; the
  others drop it). Dropped for every translated provider: the other hosted tools (``bash_*``: only
  Anthropic runs them), the ``server_tool_use`` / ``web_search_tool_result`` blocks, ``context_management``,
  ``service_tier``, citations.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from providers.canonical import Block, Image, Message, Request, Text, Thinking, Tool, ToolCall, ToolChoice, ToolResult
from providers.errors import InvalidRequest
from providers.registry import Model

from .messages_out import unwrap_signature
from .messages_types import (
    AnyChoice,
    Base64Source,
    ContentSource,
    DocumentBlock,
    FileSource,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    NamedChoice,
    NoneChoice,
    PlainTextSource,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolChoiceParam,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    URLSource,
)

__all__ = ["to_canonical"]

log = logging.getLogger("switchboard")

_CUSTOM_TOOL_TYPES = (None, "custom")


def to_canonical(req: MessagesRequest, upstream_model: str, model: Model | None, provider: str) -> Request:
    """``req`` as a canonical request for ``provider``; raises :class:`InvalidRequest` naming the field."""
    messages: list[Message] = []
    names: dict[str, str] = {}
    for i, msg in enumerate(req.messages):
        _convert_message(msg, i, messages, names, provider)
    effort, budget = _thinking(req)
    max_tokens = req.max_tokens
    if max_tokens is not None and model is not None and model.max_tokens:
        max_tokens = min(max_tokens, model.max_tokens)
    extra: dict[str, Any] = {}
    if req.top_k is not None:
        extra["top_k"] = req.top_k
    response_format = _response_format(req)
    return Request(
        model=upstream_model,
        messages=messages,
        system=_convert_system(req.system),
        tools=_convert_tools(req.tools),
        web_search=any(tool.type is not None and tool.type.startswith("web_search_") for tool in req.tools or ()),
        tool_choice=_convert_tool_choice(req.tool_choice),
        parallel_tool_calls=False if _parallel_disabled(req.tool_choice) else None,
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=list(req.stop_sequences or ()),
        reasoning_effort=effort,
        thinking_budget=budget,
        response_format=response_format,
        stream=req.stream is True,
        include_usage=True,  # Anthropic's message_delta always carries usage
        user=req.metadata.user_id if req.metadata is not None else None,
        extra=extra,
    )


def _convert_system(system: str | list[TextBlock] | None) -> list[Text]:
    if system is None:
        return []
    if isinstance(system, str):
        return [Text(system)] if system else []
    return [Text(b.text, b.cache_control) for b in system if b.text]


def _convert_message(msg: MessageParam, i: int, out: list[Message], names: dict[str, str], provider: str) -> None:
    if isinstance(msg.content, str):
        out.append(Message(msg.role, [Text(msg.content)] if msg.content else []))
        return
    results: list[Block] = []
    blocks: list[Block] = []
    pending: dict[str, tuple[str | None, str | None]] = {}
    for j, block in enumerate(msg.content):
        where = f"messages[{i}].content[{j}]"
        if isinstance(block, ToolResultBlock):
            results.append(_convert_result(block, names, where, provider))
        elif isinstance(block, ToolUseBlock):
            names[block.id] = block.name
            blocks.append(ToolCall(block.id, block.name, msgspec.json.encode(block.input).decode()))
        elif isinstance(block, ThinkingBlock | RedactedThinkingBlock):
            if msg.role == "assistant":
                _add_thinking(block, blocks, pending)
        else:
            converted = _convert_content(block, where, provider)
            if converted is not None:
                blocks.append(converted)
    for b in blocks:
        if isinstance(b, ToolCall) and b.id in pending:
            b.signature, b.signature_source = pending[b.id]
    if results:
        out.append(Message("tool", results))
    if blocks or not results:
        out.append(Message(msg.role, blocks))


def _add_thinking(
    block: ThinkingBlock | RedactedThinkingBlock, blocks: list[Block], pending: dict[str, tuple[str | None, str | None]]
) -> None:
    opaque = block.signature if isinstance(block, ThinkingBlock) else block.data
    text = block.thinking if isinstance(block, ThinkingBlock) else ""
    wrapped = unwrap_signature(opaque)
    if wrapped is None:
        # Anthropic's own: valid only at the Anthropic-speaking service that issued it, unknown here.
        if isinstance(block, ThinkingBlock):
            blocks.append(Thinking(text, signature=opaque or None))
        return
    if wrapped.tool_call is not None:
        # A Gemini thought signature that rode on a tool call: it goes back on that call.
        pending[wrapped.tool_call] = (wrapped.signature, wrapped.source)
        return
    blocks.append(
        Thinking(
            text, signature=wrapped.signature, redacted=wrapped.redacted, source=wrapped.source, item_id=wrapped.item_id
        )
    )


def _convert_content(block: Any, where: str, provider: str) -> Block | None:
    if isinstance(block, TextBlock):
        return Text(block.text, block.cache_control) if block.text else None
    if isinstance(block, ImageBlock):
        return _convert_image(block.source, where, provider)
    if isinstance(block, DocumentBlock):
        return _convert_document(block, where, provider)
    log.debug("%s: %s block dropped for %s (only Anthropic takes it)", where, type(block).__name__, provider)
    return None


def _convert_image(source: Base64Source | URLSource | FileSource, where: str, provider: str) -> Image:
    if isinstance(source, Base64Source):
        return Image(media_type=source.media_type, data=source.data)
    if isinstance(source, URLSource):
        return Image(url=source.url)
    raise InvalidRequest(
        f"{where}: file_id sources live in Anthropic's Files API, which {provider} cannot read; send the "
        "image as base64",
        param=f"{where}.source",
    )


def _convert_document(block: DocumentBlock, where: str, provider: str) -> Block:
    source = block.source
    title = f"{block.title}\n\n" if block.title else ""
    if isinstance(source, PlainTextSource):
        return Text(title + source.data, block.cache_control)
    if isinstance(source, ContentSource):
        if isinstance(source.content, str):
            return Text(title + source.content, block.cache_control)
        texts = [b.text for b in source.content if isinstance(b, TextBlock)]
        return Text(title + "\n".join(texts), block.cache_control)
    if isinstance(source, Base64Source):
        return Image(media_type=source.media_type, data=source.data)
    if isinstance(source, URLSource):
        return Text(f"{title}Document: {source.url}", block.cache_control)
    raise InvalidRequest(
        f"{where}: file_id sources live in Anthropic's Files API, which {provider} cannot read; send the "
        "document as base64 or text",
        param=f"{where}.source",
    )


def _convert_result(block: ToolResultBlock, names: dict[str, str], where: str, provider: str) -> ToolResult:
    content: list[Text | Image] = []
    if isinstance(block.content, str):
        content.append(Text(block.content))
    else:
        for k, part in enumerate(block.content or ()):
            converted = _convert_content(part, f"{where}.content[{k}]", provider)
            if isinstance(converted, Text | Image):
                content.append(converted)
    return ToolResult(block.tool_use_id, content, is_error=bool(block.is_error), name=names.get(block.tool_use_id))


def _convert_tools(tools: list[ToolSpec] | None) -> list[Tool]:
    out: list[Tool] = []
    for tool in tools or ():
        if tool.type not in _CUSTOM_TOOL_TYPES:
            log.debug("hosted tool %s (%s) dropped: only Anthropic runs it", tool.name, tool.type)
            continue
        schema = tool.input_schema or {"type": "object", "properties": {}}
        out.append(Tool(tool.name, tool.description, schema, None, tool.cache_control))
    return out


def _convert_tool_choice(choice: ToolChoiceParam | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, NoneChoice):
        return ToolChoice("none")
    if isinstance(choice, AnyChoice):
        return ToolChoice("required")
    if isinstance(choice, NamedChoice):
        return ToolChoice("tool", choice.name)
    return ToolChoice("auto")


def _parallel_disabled(choice: ToolChoiceParam | None) -> bool:
    return choice is not None and not isinstance(choice, NoneChoice) and choice.disable_parallel_tool_use is True


def _thinking(req: MessagesRequest) -> tuple[str | None, int | None]:
    """(reasoning_effort, thinking_budget) from ``thinking`` and ``output_config.effort``."""
    thinking = req.thinking
    effort = req.output_config.effort if req.output_config is not None else None
    if thinking is None or thinking.type == "disabled":
        return (effort, None) if thinking is None else (None, None)
    if thinking.type == "adaptive":
        return effort or "medium", None
    budget = thinking.budget_tokens
    if effort is None and budget is not None:
        effort = "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
    return effort or "medium", budget


def _response_format(req: MessagesRequest) -> dict[str, Any] | None:
    fmt = req.output_format or (req.output_config.format if req.output_config is not None else None)
    if not fmt or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        return None
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True}}
