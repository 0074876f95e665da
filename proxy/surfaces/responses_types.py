"""The OpenAI Responses request (``POST /v1/responses``) as msgspec types, and the checks every request gets.

Two levels, as for the chat surface (:mod:`.openai_chat_types`):

* :func:`decode_body` runs on every request: one untyped parse (bounded nesting, valid UTF-8), a sane
  ``model`` and ``input``, and a 400 for what needs stored responses (``previous_response_id``,
  ``store: true``, ``conversation``, ``background``). The passthrough forwards this dict.
* :func:`validate` runs on the translated path only: the dict converted once to :class:`ResponsesRequest`,
  so :mod:`.responses_in` meets only the types declared here. Hosted tools (``web_search`` and the like)
  are left out first: only a Responses upstream can run them, and Codex sends one on every request, so
  their absence must not be a failure. A known field of the wrong type is a 400 whose ``param`` is the
  path to it (``input[2].content[0].image_url``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import msgspec

from providers.errors import InvalidRequest

from .openai_chat_types import decode_object

__all__ = [
    "CustomTool",
    "FunctionTool",
    "InputItem",
    "LocalShellTool",
    "NamespaceTool",
    "ResponsesRequest",
    "decode_body",
    "validate",
]

log = logging.getLogger("switchboard")

_STATELESS = "send the whole conversation in 'input' with \"store\": false, as Codex CLI does"


class _Base(msgspec.Struct, omit_defaults=True):
    """Unknown fields are ignored (the passthrough keeps them; the translated path has no use for them)."""


# --- content parts ----------------------------------------------------------------------------


class InputText(_Base, tag="input_text", tag_field="type"):
    text: str


class InputImage(_Base, tag="input_image", tag_field="type"):
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(_Base, tag="input_file", tag_field="type"):
    filename: str | None = None
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None


class OutputText(_Base, tag="output_text", tag_field="type"):
    text: str


class Refusal(_Base, tag="refusal", tag_field="type"):
    refusal: str


Part = InputText | InputImage | InputFile | OutputText | Refusal


class SummaryText(_Base):
    text: str
    type: str = "summary_text"


# --- input items ------------------------------------------------------------------------------


class MessageItem(_Base, tag="message", tag_field="type"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    id: str | None = None


class ReasoningItem(_Base, tag="reasoning", tag_field="type"):
    summary: list[SummaryText] = []
    encrypted_content: str | None = None
    content: list[SummaryText] | None = None
    id: str | None = None


class FunctionCallItem(_Base, tag="function_call", tag_field="type"):
    call_id: str
    name: str
    arguments: str = "{}"
    namespace: str | None = None
    id: str | None = None


class FunctionCallOutputItem(_Base, tag="function_call_output", tag_field="type"):
    call_id: str
    output: str | list[Part]


class CustomToolCallItem(_Base, tag="custom_tool_call", tag_field="type"):
    call_id: str
    name: str
    input: str = ""
    namespace: str | None = None
    id: str | None = None


class CustomToolCallOutputItem(_Base, tag="custom_tool_call_output", tag_field="type"):
    call_id: str
    output: str | list[Part]


class ShellAction(_Base):
    command: list[str]
    type: str = "exec"
    timeout_ms: int | None = None
    working_directory: str | None = None
    env: dict[str, str] | None = None
    user: str | None = None


class LocalShellCallItem(_Base, tag="local_shell_call", tag_field="type"):
    action: ShellAction
    call_id: str | None = None
    id: str | None = None
    status: str | None = None


class LocalShellCallOutputItem(_Base, tag="local_shell_call_output", tag_field="type"):
    output: str
    id: str | None = None
    call_id: str | None = None


InputItem = (
    MessageItem
    | ReasoningItem
    | FunctionCallItem
    | FunctionCallOutputItem
    | CustomToolCallItem
    | CustomToolCallOutputItem
    | LocalShellCallItem
    | LocalShellCallOutputItem
)
#: Output items of hosted tools the model ran upstream: nothing to replay elsewhere, left out.
_HOSTED_ITEMS = frozenset({"web_search_call", "file_search_call", "code_interpreter_call", "image_generation_call"})


# --- tools ------------------------------------------------------------------------------------


class FunctionTool(_Base, tag="function", tag_field="type"):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomFormat(_Base):
    type: str = "text"
    syntax: str | None = None
    definition: str | None = None


class CustomTool(_Base, tag="custom", tag_field="type"):
    name: str
    description: str | None = None
    format: CustomFormat | None = None


class NamespaceTool(_Base, tag="namespace", tag_field="type"):
    name: str
    tools: list[FunctionTool | CustomTool]
    description: str | None = None


class LocalShellTool(_Base, tag="local_shell", tag_field="type"):
    pass


ToolParam = FunctionTool | CustomTool | NamespaceTool | LocalShellTool
_OWN_TOOLS = frozenset({"function", "custom", "namespace", "local_shell"})


class NamedChoice(_Base):
    type: str
    name: str | None = None
    namespace: str | None = None
    mode: str | None = None


class ReasoningParam(_Base):
    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class FormatParam(_Base):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextParam(_Base):
    format: FormatParam | None = None
    verbosity: str | None = None


class ResponsesRequest(_Base):
    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    tools: list[ToolParam] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningParam | None = None
    include: list[str] | None = None
    text: TextParam | None = None
    prompt_cache_key: str | None = None
    max_output_tokens: int | None = None
    stream: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    user: str | None = None
    safety_identifier: str | None = None
    truncation: str | None = None
    prompt_cache_retention: str | None = None
    store: bool | None = None


def decode_body(body: bytes | bytearray) -> dict[str, Any]:
    """The body as a dict with a bounded ``model`` and an ``input``; a 400 for anything else and for the
    stateful features (there is no response store to read from)."""
    req = decode_object(body, "openai/gpt-5")
    _refuse_stateful(req)
    items = req.get("input")
    for i, item in enumerate(items if isinstance(items, list) else ()):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            raise InvalidRequest(
                f"input[{i}] is an item_reference, which needs stored items Switchboard does not keep; "
                f"{_STATELESS}, each item in full",
                param=f"input[{i}]",
                code="unsupported_parameter",
            )
    if not (isinstance(items, str) and items) and not (isinstance(items, list) and items):
        raise InvalidRequest("'input' is required: a string or a non-empty array of input items", param="input")
    return req


def _refuse_stateful(req: dict[str, Any]) -> None:
    # Switchboard keeps no responses (yet): a request that leans on a stored one could not be answered right.
    if req.get("previous_response_id") is not None:
        raise InvalidRequest(
            f"'previous_response_id' needs stored responses, which Switchboard does not keep; {_STATELESS}",
            param="previous_response_id",
            code="unsupported_parameter",
        )
    if req.get("store") is True:
        raise InvalidRequest(
            f'"store": true needs stored responses, which Switchboard does not keep; {_STATELESS}',
            param="store",
            code="unsupported_parameter",
        )
    if req.get("conversation") is not None:
        raise InvalidRequest(
            f"'conversation' needs stored conversations, which Switchboard does not keep; {_STATELESS}",
            param="conversation",
            code="unsupported_parameter",
        )
    if req.get("background") is True:
        raise InvalidRequest(
            "'background' responses need a response store, which Switchboard does not keep; "
            "send the request without it (stream it if it is long)",
            param="background",
            code="unsupported_parameter",
        )


def validate(body: dict[str, Any]) -> ResponsesRequest:
    """``body`` (from :func:`decode_body`) as a :class:`ResponsesRequest`, or a 400 naming the parameter."""
    body = _without_hosted(body)
    try:
        return msgspec.convert(body, ResponsesRequest)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from exc


def _without_hosted(body: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy without hosted tools and their call items, with ``type`` on bare messages."""
    out = dict(body)
    tools = body.get("tools")
    if isinstance(tools, list):
        kept = [t for t in tools if not isinstance(t, dict) or t.get("type") in _OWN_TOOLS]
        if len(kept) < len(tools):
            dropped = sorted({str(t.get("type")) for t in tools if isinstance(t, dict) and t not in kept})
            log.debug("responses: hosted tools left out for a translated upstream: %s", ", ".join(dropped))
        out["tools"] = kept
    items = body.get("input")
    if isinstance(items, list):
        out["input"] = [_typed(it) for it in items if not (isinstance(it, dict) and it.get("type") in _HOSTED_ITEMS)]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") not in ("function", "custom", "allowed_tools"):
        out["tool_choice"] = "auto"  # a hosted tool forced: nothing here can run it
    return out


def _typed(item: Any) -> Any:
    # EasyInputMessage ({"role", "content"}) may leave out its type.
    if isinstance(item, dict) and "type" not in item and "role" in item:
        return {**item, "type": "message"}
    return item


def _invalid(detail: str) -> InvalidRequest:
    # msgspec says "Expected `str`, got `int` - at `$.input[0].content`": the client wants the parameter path.
    what, sep, where = detail.rpartition(" - at `$")
    if not sep:
        return InvalidRequest(f"invalid request: {detail} (see the OpenAI Responses API reference)")
    param = where.rstrip("`").lstrip(".")
    what = what[:1].lower() + what[1:]
    return InvalidRequest(f"invalid '{param}': {what} (see the OpenAI Responses API reference)", param=param)
