"""What a cloud adapter may need to know about a request's content, read once by the pipeline.

Adapters must not decode the bytes a wire module built (a second JSON round trip per request, and
knowledge of every wire format in each adapter). The pipeline computes :class:`RequestFacts` from what it
already decoded, the passthrough body (:func:`facts_from_chat`) or the canonical request
(:func:`facts_from_request`), and hands them over in :class:`~providers.cloud.base.RequestContext`.
Only requests to a provider with a cloud adapter need them.

:func:`facts_from_body` reads them off an upstream body in its wire format; it exists for callers that hold
nothing decoded (tests, a caller not yet passing facts) and costs a decode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from .canonical import Image, Message, Request, Text, ToolResult

__all__ = ["RequestFacts", "facts_from_body", "facts_from_chat", "facts_from_request"]

_IMAGE_TYPES = frozenset({"image_url", "image", "input_image"})
_TOOL_RESULT_TYPES = frozenset({"tool_result", "function_call_output", "custom_tool_call_output"})


@dataclass(frozen=True, slots=True)
class RequestFacts:
    #: ``user`` when the last message is the user's own turn; ``agent`` after a tool result or an assistant turn.
    initiator: Literal["user", "agent"] = "user"
    #: Whether an image appears anywhere in the conversation (user content, tool results).
    has_image: bool = False
    stream: bool = False
    #: The client's own per-conversation key (``prompt_cache_key``), if it sent one.
    session_key: str | None = None
    #: A digest of what stays the same across one conversation's turns: model, instructions, first user turn.
    conversation: str = ""


def facts_from_chat(body: Mapping[str, Any]) -> RequestFacts:
    """From an OpenAI chat completions body, as the passthrough decoded it."""
    return _facts_from_dict(body, "openai-completions")


def facts_from_request(req: Request) -> RequestFacts:
    """From the canonical request every translated surface decodes to."""
    parts = [req.model, *(t.text for t in req.system)]
    first_user = next((m for m in req.messages if m.role == "user"), None)
    if first_user is not None:
        parts.append("\n".join(b.text for b in first_user.content if isinstance(b, Text)))
    return RequestFacts(
        initiator=_initiator_of(req.messages[-1]) if req.messages else "user",
        has_image=any(_message_has_image(m) for m in req.messages),
        stream=req.stream,
        session_key=req.session_id,
        conversation=_digest(parts),
    )


def facts_from_body(body: bytes, api: str) -> RequestFacts:
    """From an upstream body in wire API ``api`` (OpenAI chat or Responses, Anthropic Messages)."""
    try:
        data = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        data = None
    return _facts_from_dict(data if isinstance(data, dict) else {}, api)


# --- private ----------------------------------------------------------------------------------


def _initiator_of(message: Message) -> Literal["user", "agent"]:
    if message.role != "user":
        return "agent"
    if message.content and all(isinstance(b, ToolResult) for b in message.content):
        return "agent"
    return "user"


def _message_has_image(message: Message) -> bool:
    for block in message.content:
        if isinstance(block, Image):
            return True
        if isinstance(block, ToolResult) and any(isinstance(c, Image) for c in block.content):
            return True
    return False


def _facts_from_dict(data: Mapping[str, Any], api: str) -> RequestFacts:
    key = data.get("prompt_cache_key")
    return RequestFacts(
        initiator=_initiator(data, api),
        has_image=_has_image(data),
        stream=data.get("stream") is True,
        session_key=key if isinstance(key, str) else None,
        conversation=_prefix_digest(data),
    )


def _messages(data: Mapping[str, Any], api: str) -> list[Any]:
    if api == "openai-responses":
        items = data.get("input")
        if isinstance(items, str):
            return [{"role": "user", "content": items}]
        return items if isinstance(items, list) else []
    messages = data.get("messages")
    return messages if isinstance(messages, list) else []


def _initiator(data: Mapping[str, Any], api: str) -> Literal["user", "agent"]:
    messages = _messages(data, api)
    if not messages:
        return "user"
    last = messages[-1]
    if not isinstance(last, dict):
        return "agent"
    if last.get("type") in _TOOL_RESULT_TYPES or last.get("role") != "user":
        return "agent"
    content = last.get("content")
    if (
        isinstance(content, list)
        and content
        and all(isinstance(part, dict) and part.get("type") in _TOOL_RESULT_TYPES for part in content)
    ):
        return "agent"  # Anthropic Messages: tool results travel in a "user" message
    return "user"


def _has_image(value: Any) -> bool:
    if isinstance(value, dict):
        if value.get("type") in _IMAGE_TYPES:
            return True
        return any(_has_image(v) for k, v in value.items() if k in ("messages", "input", "content", "output"))
    if isinstance(value, list):
        return any(_has_image(v) for v in value)
    return False


def _prefix_digest(data: Mapping[str, Any]) -> str:
    parts = [str(data.get("model", ""))]
    if "system" in data:  # Anthropic Messages keeps instructions out of the message list
        parts.append(_text_of(data["system"]))
    for message in data.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            parts.append(_text_of(message.get("content")))
        elif role == "user":
            parts.append(_text_of(message.get("content")))
            break
    return _digest(parts)


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _text_of(content: Any) -> str:
    """The text of a message's content, ignoring per-turn annotations such as ``cache_control``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(part) for part in content)
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return str(content["text"])
        rest = {k: v for k, v in content.items() if k != "cache_control"}
        return msgspec.json.encode(rest, order="sorted").decode()
    return "" if content is None else str(content)
