"""The one request/response/event model every wire API translates to and from.

Inbound surfaces (``proxy/``) decode a client request into a :class:`Request`; a wire module
(``providers/wire/``) encodes it for its upstream and decodes the upstream's answer into a
:class:`Response` or a stream of :data:`Event` values; the surface encodes those back for the client.
N surfaces and M upstream APIs cost N + M translators, not N x M.

Conventions:

* ``Request.system`` holds the system/developer instructions in order; ``Request.messages`` holds the
  conversation (roles ``user``, ``assistant``, ``tool``) without them.
* A tool result is a ``tool`` message whose blocks are :class:`ToolResult` (one per call answered).
* Tool-call ``arguments`` are the JSON text as the model produced it (never re-serialized).
* Thinking keeps the provider's ``signature`` (Anthropic, Bedrock, Gemini thought signatures) or opaque
  ``redacted`` data (redacted thinking, OpenAI encrypted reasoning) so a later turn can send it back
  unchanged, with ``source`` naming who issued it (:func:`providers.wire.replay.issuer`): a signature
  is only valid where it was issued, and is replayed only there.
* Stream events carry an ``index`` per tool call, in the order the model opened them (0, 1, ...).
* Token counts follow the OpenAI convention in :class:`Usage`: ``input_tokens`` includes cached tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Block",
    "Event",
    "Finish",
    "FinishReason",
    "Image",
    "Message",
    "Request",
    "Response",
    "StreamError",
    "Text",
    "TextDelta",
    "Thinking",
    "ThinkingDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolChoice",
    "ToolResult",
    "Usage",
    "UsageEvent",
    "collect",
]

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


# --- content blocks ---------------------------------------------------------------------------


@dataclass(slots=True)
class Text:
    text: str
    #: Anthropic-style ``{"type": "ephemeral", "ttl"?: "1h"}`` the client asked for on this block.
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class Image:
    """An image: either inline (``data`` base64 + ``media_type``) or by ``url`` (http(s))."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class Thinking:
    text: str = ""
    #: Anthropic/Bedrock signature that must accompany the block on replay.
    signature: str | None = None
    #: Opaque provider data: Anthropic ``redacted_thinking.data``, OpenAI ``encrypted_content``.
    redacted: str | None = None
    #: Who issued ``signature``/``redacted`` (:func:`providers.wire.replay.issuer`); only valid there.
    source: str | None = None
    #: Provider item id (OpenAI reasoning item ``id``), kept for replay.
    item_id: str | None = None


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str = "{}"
    #: Gemini ``thoughtSignature`` attached to a function call part.
    signature: str | None = None
    #: Who issued ``signature`` (as :attr:`Thinking.source`); None when the client did not say.
    signature_source: str | None = None


@dataclass(slots=True)
class ToolResult:
    tool_call_id: str
    content: list[Text | Image] = field(default_factory=list)
    is_error: bool = False
    #: The called function's name (Gemini matches responses by name).
    name: str | None = None


Block = Text | Image | Thinking | ToolCall | ToolResult


@dataclass(slots=True)
class Message:
    role: Literal["user", "assistant", "tool"]
    content: list[Block] = field(default_factory=list)


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None


@dataclass(slots=True)
class Request:
    model: str
    messages: list[Message]
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    #: Sampling knobs a provider may or may not honour; wire modules map them or drop them (documented).
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: list[str] = field(default_factory=list)
    #: minimal | low | medium | high | xhigh | max | none
    reasoning_effort: str | None = None
    #: An explicit thinking budget in tokens (overrides the effort's default budget).
    thinking_budget: int | None = None
    #: OpenAI ``response_format``: ``{"type": "json_schema", "json_schema": {...}}`` or ``json_object``.
    response_format: dict[str, Any] | None = None
    stream: bool = False
    include_usage: bool = False
    #: Stable per-conversation id (prompt-cache keys, session affinity), when the client gives one.
    session_id: str | None = None
    user: str | None = None
    #: OpenAI ``service_tier`` (``auto``, ``default``, ``flex``, ``priority``), for providers that have tiers.
    service_tier: str | None = None
    #: OpenAI ``metadata``: string key/value tags (Responses ``metadata``, Bedrock ``requestMetadata``).
    metadata: dict[str, str] | None = None
    #: Client fields with no canonical meaning, for wire modules that can pass them on.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The client offered a hosted web search tool (Responses ``web_search``, Anthropic ``web_search_*``):
    #: wire modules whose API has one add it (Anthropic, Gemini); the others drop it, never failing.
    web_search: bool = False


# --- answers --------------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    """Tokens one exchange consumed, in one convention whatever the provider reported (OpenAI's):

    * ``input_tokens`` is every prompt token the provider processed, **including** the cache reads and
      cache writes; ``cache_read_tokens`` and ``cache_write_tokens`` are parts of it, so the uncached
      input is ``input_tokens - cache_read_tokens - cache_write_tokens``. (OpenAI ``prompt_tokens`` and
      Gemini ``promptTokenCount`` already include cached tokens; Anthropic ``input_tokens`` and Bedrock
      ``inputTokens`` exclude them, so their decoders add the cache counts.)
    * ``output_tokens`` is every generated token, **including** reasoning/thinking; ``reasoning_tokens``
      is part of it. (OpenAI ``completion_tokens``, Anthropic and Bedrock output counts include it;
      Gemini ``candidatesTokenCount`` and xAI ``completion_tokens`` exclude it, so their decoders add it.)

    So a price list bills ``input - cache_read - cache_write`` at the input price, each cache count at
    its own, and ``output_tokens`` once at the output price (:func:`providers.pricing.cost_of`);
    ``reasoning_tokens`` is never added again.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class Response:
    id: str
    model: str
    content: list[Block] = field(default_factory=list)
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None


# --- stream events ----------------------------------------------------------------------------


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ThinkingDelta:
    text: str = ""
    #: Arrives once, usually after the text (Anthropic ``signature_delta``).
    signature: str | None = None
    redacted: str | None = None
    source: str | None = None
    item_id: str | None = None


@dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str
    signature: str | None = None
    signature_source: str | None = None


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str


@dataclass(slots=True)
class ToolCallEnd:
    index: int


@dataclass(slots=True)
class UsageEvent:
    usage: Usage


@dataclass(slots=True)
class Finish:
    reason: FinishReason


@dataclass(slots=True)
class StreamError:
    """The upstream reported an error inside an already started stream."""

    error: Exception


Event = TextDelta | ThinkingDelta | ToolCallStart | ToolCallDelta | ToolCallEnd | UsageEvent | Finish | StreamError


def collect(events: list[Event], *, id: str, model: str) -> Response:
    """Assemble a :class:`Response` from a complete event stream (raises the first StreamError)."""
    resp = Response(id=id, model=model)
    calls: dict[int, ToolCall] = {}
    for ev in events:
        if isinstance(ev, TextDelta):
            last = resp.content[-1] if resp.content else None
            if isinstance(last, Text):
                last.text += ev.text
            else:
                resp.content.append(Text(ev.text))
        elif isinstance(ev, ThinkingDelta):
            last = resp.content[-1] if resp.content else None
            if not isinstance(last, Thinking) or last.signature or last.redacted:
                last = Thinking(source=ev.source, item_id=ev.item_id)
                resp.content.append(last)
            last.text += ev.text
            last.signature = ev.signature or last.signature
            last.redacted = ev.redacted or last.redacted
        elif isinstance(ev, ToolCallStart):
            calls[ev.index] = ToolCall(ev.id, ev.name, "", ev.signature, ev.signature_source)
            resp.content.append(calls[ev.index])
        elif isinstance(ev, ToolCallDelta):
            calls[ev.index].arguments += ev.arguments
        elif isinstance(ev, UsageEvent):
            resp.usage = ev.usage
        elif isinstance(ev, Finish):
            resp.finish_reason = ev.reason
        elif isinstance(ev, StreamError):
            raise ev.error
    for call in calls.values():
        call.arguments = call.arguments or "{}"
    return resp
