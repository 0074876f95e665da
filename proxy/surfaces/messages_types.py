"""The Anthropic Messages request as msgspec types, and the checks every request gets at the surface.

Two levels, as on the OpenAI chat surface (:mod:`.openai_chat_types`):

* :func:`decode_body` runs on every request: one untyped parse (nesting capped, invalid UTF-8 a clean
  400), then ``model``, ``messages`` and (for ``/v1/messages``) ``max_tokens``. The passthrough forwards
  this dict, unknown fields and all; the upstream judges the rest.
* :func:`validate` runs on the translated path and for token estimates: the dict converted once to
  :class:`MessagesRequest`, so the translators meet only declared types. Unknown fields are ignored; a
  known field of the wrong type, or a content block of an unknown type, is a 400 whose ``param`` is
  its path (``messages[0].content[1].source.media_type``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from providers.errors import InvalidRequest

from .openai_chat_types import decode_body as _decode_json_object

__all__ = [
    "Block",
    "DocumentBlock",
    "ImageBlock",
    "MessageParam",
    "MessagesRequest",
    "RedactedThinkingBlock",
    "ServerToolUseBlock",
    "TextBlock",
    "ThinkingBlock",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "WebSearchResultBlock",
    "decode_body",
    "validate",
]


class _Base(msgspec.Struct, omit_defaults=True):
    """Unknown fields are ignored (the passthrough keeps them; translation has no place for them)."""


_Cache = dict[str, Any] | None


# --- sources ----------------------------------------------------------------------------------


class Base64Source(_Base, tag="base64", tag_field="type"):
    media_type: str
    data: str


class URLSource(_Base, tag="url", tag_field="type"):
    url: str


class FileSource(_Base, tag="file", tag_field="type"):
    file_id: str


class PlainTextSource(_Base, tag="text", tag_field="type"):
    data: str
    media_type: str = "text/plain"


# --- content blocks ---------------------------------------------------------------------------


class TextBlock(_Base, tag="text", tag_field="type"):
    text: str
    cache_control: _Cache = None
    citations: list[Any] | None = None


class ImageBlock(_Base, tag="image", tag_field="type"):
    source: Base64Source | URLSource | FileSource
    cache_control: _Cache = None


class ContentSource(_Base, tag="content", tag_field="type"):
    content: str | list[TextBlock | ImageBlock]


class DocumentBlock(_Base, tag="document", tag_field="type"):
    source: Base64Source | URLSource | PlainTextSource | ContentSource | FileSource
    title: str | None = None
    context: str | None = None
    cache_control: _Cache = None
    citations: dict[str, Any] | None = None


class ToolUseBlock(_Base, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: _Cache = None


class ToolResultBlock(_Base, tag="tool_result", tag_field="type"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock | DocumentBlock] | None = None
    is_error: bool | None = None
    cache_control: _Cache = None


class ThinkingBlock(_Base, tag="thinking", tag_field="type"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(_Base, tag="redacted_thinking", tag_field="type"):
    data: str


class ServerToolUseBlock(_Base, tag="server_tool_use", tag_field="type"):
    """A hosted tool Anthropic ran (web search); only Anthropic can take it back."""

    id: str
    name: str
    input: dict[str, Any] | None = None


class WebSearchResultBlock(_Base, tag="web_search_tool_result", tag_field="type"):
    tool_use_id: str
    content: Any = None


Block = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ServerToolUseBlock
    | WebSearchResultBlock
)


class MessageParam(_Base):
    role: Literal["user", "assistant"]
    content: str | list[Block]


# --- tools and options ------------------------------------------------------------------------


class ToolSpec(_Base):
    """A client tool (no ``type``, or ``custom``) or a hosted one (``web_search_20250305``, ``bash_...``)."""

    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: _Cache = None


class AutoChoice(_Base, tag="auto", tag_field="type"):
    disable_parallel_tool_use: bool | None = None


class AnyChoice(_Base, tag="any", tag_field="type"):
    disable_parallel_tool_use: bool | None = None


class NamedChoice(_Base, tag="tool", tag_field="type"):
    name: str
    disable_parallel_tool_use: bool | None = None


class NoneChoice(_Base, tag="none", tag_field="type"):
    pass


ToolChoiceParam = AutoChoice | AnyChoice | NamedChoice | NoneChoice


class ThinkingParam(_Base):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class Metadata(_Base):
    user_id: str | None = None


class OutputConfig(_Base):
    effort: str | None = None
    format: dict[str, Any] | None = None


class MessagesRequest(_Base):
    model: str
    messages: list[MessageParam]
    max_tokens: int | None = None
    system: str | list[TextBlock] | None = None
    metadata: Metadata | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    thinking: ThinkingParam | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoiceParam | None = None
    service_tier: str | None = None
    output_config: OutputConfig | None = None
    #: The structured-outputs beta's field (``{"type": "json_schema", "schema": {...}}``).
    output_format: dict[str, Any] | None = None
    context_management: dict[str, Any] | None = None


def decode_body(body: bytes | bytearray, *, need_max_tokens: bool) -> dict[str, Any]:
    """The body as a dict with ``model``, a non-empty ``messages`` array and (when asked) ``max_tokens``;
    raises :class:`InvalidRequest` (400), never a foreign exception."""
    req = _decode_json_object(body)
    if need_max_tokens:
        value = req.get("max_tokens")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(
                "'max_tokens' is required: a positive integer (the most tokens the answer may have)",
                param="max_tokens",
            )
    return req


def validate(body: dict[str, Any]) -> MessagesRequest:
    """``body`` (from :func:`decode_body`) as a :class:`MessagesRequest`, or a 400 naming the parameter."""
    try:
        return msgspec.convert(body, MessagesRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from exc


def _invalid(detail: str) -> InvalidRequest:
    # msgspec: "Expected `str`, got `int` - at `$.messages[0].content[1].text`".
    what, sep, where = detail.rpartition(" - at `$")
    if not sep:
        return InvalidRequest(f"invalid request: {detail} (see Anthropic's Messages API reference)")
    param = where.rstrip("`").lstrip(".")
    what = what[:1].lower() + what[1:]
    hint = ""
    if param.endswith(".type") and "content" in param:
        hint = (
            "; content blocks are 'text', 'image', 'document', 'tool_use', 'tool_result', 'thinking', "
            "'redacted_thinking'"
        )
    return InvalidRequest(f"invalid '{param}': {what}{hint} (see Anthropic's Messages API reference)", param=param)
