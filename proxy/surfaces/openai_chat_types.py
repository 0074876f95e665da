"""The OpenAI chat-completions request as msgspec types, and the checks every request gets at the surface.

Two levels, so the passthrough stays cheap:

* :func:`decode_body` runs on every request: one untyped ``msgspec`` parse of the body, with a cap on
  JSON nesting (deep nesting would overflow the recursion limit in whichever step recurses next) and
  a clean 400 for invalid UTF-8; then ``model`` (a bounded string) and ``messages``. The passthrough
  forwards this dict, unknown fields and all, and the upstream judges the rest.
* :func:`validate` runs on the translated path only: the dict converted once to :class:`ChatRequest`,
  so the translators meet only the types declared here. Unknown top-level fields are allowed (they
  reach the wire module as ``Request.extra``); a known field of the wrong type is a 400 whose
  ``param`` is the path to it (``messages[0].content[1].image_url.detail``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from providers.errors import InvalidRequest

from ..router import MAX_MODEL_LENGTH

__all__ = [
    "MAX_DEPTH",
    "AssistantMessage",
    "ChatMessage",
    "ChatRequest",
    "ContentPart",
    "DeveloperMessage",
    "ImagePart",
    "InputAudioPart",
    "NamedToolChoice",
    "RefusalPart",
    "ResponseFormat",
    "SystemMessage",
    "TextPart",
    "ThinkingBlockIn",
    "ToolMessage",
    "ToolSpec",
    "UserMessage",
    "decode_body",
    "decode_object",
    "nested_deeper_than",
    "too_deep_message",
    "validate",
]

#: Deepest JSON nesting accepted. Real requests (a tool schema inside tools[i].function.parameters)
#: stay far below; the Python recursion limit (~1000 frames, shared with the server's own stack) does not.
MAX_DEPTH = 64


class _Base(msgspec.Struct, omit_defaults=True):
    """Unknown fields are ignored here (they stay in the raw body for ``Request.extra``)."""


# --- content parts ----------------------------------------------------------------------------


class TextPart(_Base, tag="text", tag_field="type"):
    text: str
    cache_control: dict[str, str] | None = None


class ImageURL(_Base):
    url: str
    detail: str | None = None


class ImagePart(_Base, tag="image_url", tag_field="type"):
    image_url: ImageURL | str


class InputAudioPart(_Base, tag="input_audio", tag_field="type"):
    input_audio: dict[str, Any] | None = None


class RefusalPart(_Base, tag="refusal", tag_field="type"):
    refusal: str


class FilePart(_Base, tag="file", tag_field="type"):
    file: dict[str, Any] | None = None


ContentPart = TextPart | ImagePart | InputAudioPart | RefusalPart | FilePart
Content = str | list[ContentPart]


# --- messages ---------------------------------------------------------------------------------


class FunctionCall(_Base):
    name: str
    arguments: str | None = None


class ToolCallIn(_Base):
    id: str
    function: FunctionCall
    type: str = "function"
    #: Gemini thought signature Switchboard returned on this call, and who issued it.
    thought_signature: str | None = None
    thought_signature_provider: str | None = None


class ThinkingBlockIn(_Base):
    type: str | None = None
    thinking: str | None = None
    text: str | None = None
    signature: str | None = None
    data: str | None = None
    #: Who issued ``signature``/``data`` (Switchboard's tag); signatures are replayed only there.
    provider: str | None = None
    id: str | None = None


class SystemMessage(_Base, tag="system", tag_field="role"):
    content: Content
    name: str | None = None


class DeveloperMessage(_Base, tag="developer", tag_field="role"):
    content: Content
    name: str | None = None


class UserMessage(_Base, tag="user", tag_field="role"):
    content: Content
    name: str | None = None


class AssistantMessage(_Base, tag="assistant", tag_field="role"):
    content: Content | None = None
    tool_calls: list[ToolCallIn] | None = None
    reasoning_content: str | None = None
    thinking_blocks: list[ThinkingBlockIn] | None = None
    refusal: str | None = None
    name: str | None = None


class ToolMessage(_Base, tag="tool", tag_field="role"):
    tool_call_id: str
    content: Content | None = None
    is_error: bool | None = None


ChatMessage = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


# --- tools and formats ------------------------------------------------------------------------


class FunctionDef(_Base):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(_Base):
    type: Literal["function"]
    function: FunctionDef
    cache_control: dict[str, str] | None = None


class NamedFunction(_Base):
    name: str


class NamedToolChoice(_Base):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaSpec(_Base):
    name: str | None = None
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(_Base, tag="text", tag_field="type"):
    pass


class JsonObjectFormat(_Base, tag="json_object", tag_field="type"):
    pass


class JsonSchemaFormat(_Base, tag="json_schema", tag_field="type"):
    json_schema: JsonSchemaSpec


ResponseFormat = TextFormat | JsonObjectFormat | JsonSchemaFormat


class StreamOptions(_Base):
    include_usage: bool | None = None


class ThinkingParam(_Base):
    type: str | None = None
    budget_tokens: int | None = None


# OpenAI's documented ranges, so a bad value is a 400 naming it here rather than a provider's vaguer one.
_Penalty = Annotated[float, msgspec.Meta(ge=-2.0, le=2.0)]
_Metadata = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=64)], Annotated[str, msgspec.Meta(max_length=512)]],
    msgspec.Meta(max_length=16),
]


class ChatRequest(_Base):
    model: str
    messages: list[ChatMessage]
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    reasoning_effort: str | None = None
    thinking: ThinkingParam | None = None
    response_format: ResponseFormat | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    n: Annotated[int, msgspec.Meta(ge=1)] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    functions: list[Any] | None = None
    function_call: str | dict[str, Any] | None = None
    seed: int | None = None
    presence_penalty: _Penalty | None = None
    frequency_penalty: _Penalty | None = None
    logit_bias: dict[str, float] | None = None
    store: bool | None = None
    metadata: _Metadata | None = None
    service_tier: str | None = None
    prediction: dict[str, Any] | None = None
    # Not OpenAI's, but read by wire modules from ``Request.extra``: typed so they arrive clean.
    top_k: int | None = None
    verbosity: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    truncation: str | None = None


_DECODER = msgspec.json.Decoder()

#: What a wrong value at a path ending like this (indexes left out) should have been, for the 400's message.
_EXPECTED = {
    "role": "'system', 'developer', 'user', 'assistant' or 'tool'",
    "content": "a string or an array of content parts",
    "content.type": "'text', 'image_url', 'input_audio', 'refusal' or 'file'",
    "response_format.type": "'text', 'json_object' or 'json_schema'",
    "tools.type": "'function'",
    "tool_choice.type": "'function'",
    "detail": "'auto', 'low' or 'high'",
    "parameters": "a JSON schema object",
    "tool_choice": "'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}",
    "response_format": "{'type': 'text' | 'json_object' | 'json_schema', ...}",
    "stop": "a string or an array of strings",
    "metadata": "an object of at most 16 string values (keys up to 64 characters, values up to 512)",
}


def decode_object(body: bytes | bytearray, example_model: str = "openai/gpt-4o") -> dict[str, Any]:
    """A request body as a dict with a bounded ``model``: the checks every JSON surface starts with
    (JSON, UTF-8, nesting depth, an object, ``model``). Raises :class:`InvalidRequest` (400) for anything
    else, never a foreign exception."""
    try:
        req = _DECODER.decode(body)
    except UnicodeDecodeError as exc:
        # msgspec decodes each JSON string on its own: the offset is within that string.
        bad = exc.object[exc.start : exc.start + 1].hex() or "?"
        raise InvalidRequest(
            f"the request body is not valid UTF-8 (byte 0x{bad} at offset {exc.start} of a JSON string: "
            f"{exc.reason}); send text encoded as UTF-8",
            code="invalid_encoding",
        ) from exc
    except RecursionError as exc:
        raise InvalidRequest(too_deep_message(), code="nesting_too_deep") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc})", code="invalid_json") from exc
    if not isinstance(req, dict):
        raise InvalidRequest("the request body must be a JSON object")
    if nested_deeper_than(req, body, MAX_DEPTH):
        raise InvalidRequest(too_deep_message(), code="nesting_too_deep")
    model = req.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(f"'model' is required: a string such as '{example_model}'", param="model")
    if len(model) > MAX_MODEL_LENGTH:
        raise InvalidRequest(
            f"'model' is {len(model)} characters long; model ids are at most {MAX_MODEL_LENGTH} "
            "(use 'provider/model-id', GET /v1/models lists them)",
            param="model",
        )
    return req


def decode_body(body: bytes | bytearray) -> dict[str, Any]:
    """The request body as a dict with a bounded ``model`` and a non-empty ``messages`` array."""
    req = decode_object(body)
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required: a non-empty array of messages", param="messages")
    return req


def validate(body: dict[str, Any]) -> ChatRequest:
    """``body`` (from :func:`decode_body`) as a :class:`ChatRequest`, or a 400 naming the bad parameter."""
    try:
        return msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from exc


def _invalid(detail: str) -> InvalidRequest:
    # msgspec says "Expected `float`, got `str` - at `$.temperature`"; the client wants the parameter's name.
    # A bad object key is "... - at `key` in `$.metadata`"; a value under any key is "$.metadata[...]".
    what, sep, where = detail.replace(" - at `key` in `$", " in a key - at `$").rpartition(" - at `$")
    if not sep:
        return InvalidRequest(f"invalid request: {detail}")
    param = where.rstrip("`").lstrip(".").removesuffix("[...]")
    what = what[:1].lower() + what[1:]
    parts = [p.split("[", 1)[0] for p in param.split(".")]
    key = next((k for k in (".".join(parts[-2:]), parts[-1]) if k in _EXPECTED), None)
    hint = f"; expected {_EXPECTED[key]}" if key and not what.startswith("expected") else ""
    return InvalidRequest(f"invalid '{param}': {what}{hint} (see the OpenAI chat completions reference)", param=param)


def nested_deeper_than(obj: dict[str, Any], body: bytes | bytearray, limit: int) -> bool:
    # Depth cannot exceed the number of '{' and '['; counting is cheap for the typical small body, and
    # only bodies with many of them are walked (level by level, no recursion).
    if len(body) < 4096 and body.count(b"{") + body.count(b"[") <= limit:
        return False
    level: list[Any] = [obj]
    depth = 1
    while level:
        if depth > limit:
            return True
        level = [
            v
            for o in level
            for v in (o.values() if o.__class__ is dict else o)
            if v.__class__ is dict or v.__class__ is list
        ]
        depth += 1
    return False


def too_deep_message() -> str:
    return f"the request body nests JSON deeper than {MAX_DEPTH} levels; flatten it (tool schemas rarely need 10)"
