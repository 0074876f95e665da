"""A Responses request (:class:`.responses_types.ResponsesRequest`) → the canonical :class:`Request`.

Mapping:

* ``instructions`` and ``system``/``developer`` messages → ``Request.system`` (in order);
* user messages (``input_text``, ``input_image``) → user messages; assistant ``message`` items
  (``output_text``), ``reasoning``, ``function_call``, ``custom_tool_call`` and ``local_shell_call``
  items → one assistant message per run of them; ``*_output`` items → ``tool`` messages;
* ``function`` tools as they are; ``custom`` (freeform) tools → function tools with one string
  argument ``input`` (their grammar in the description); ``namespace`` tools flattened to
  ``{namespace}__{name}``; ``local_shell`` → a function ``local_shell`` taking the exec action.
  :class:`Shape` remembers all of it, so the answer maps the calls back (:mod:`.responses_out`);
* a hosted ``web_search`` / ``web_search_preview`` tool → ``Request.web_search`` (the wire modules
  whose API has a search tool add theirs; the others drop it);
* a ``reasoning`` item whose ``encrypted_content`` Switchboard sealed (:func:`seal`) becomes the
  :class:`Thinking` it came from (text, signature, opaque data, issuer), so the wire module replays it
  exactly, and only to the service that issued it (:mod:`providers.wire.replay`); a sealed call
  signature (a Gemini ``thoughtSignature`` on a function call) goes back onto its call. Encrypted content
  Switchboard did not seal (OpenAI's own) is kept with no issuer, which no wire module replays.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

import msgspec

from providers.canonical import Block, Image, Message, Request, Text, Thinking, Tool, ToolCall, ToolChoice, ToolResult
from providers.errors import InvalidRequest

from .responses_types import (
    CustomTool,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputFile,
    InputImage,
    InputText,
    LocalShellCallItem,
    LocalShellCallOutputItem,
    MessageItem,
    NamedChoice,
    NamespaceTool,
    OutputText,
    Part,
    ReasoningItem,
    Refusal,
    ResponsesRequest,
)

__all__ = ["LOCAL_SHELL", "SEAL_PREFIX", "Sealed", "Shape", "flat_name", "seal", "to_canonical", "unseal"]

#: The function a ``local_shell`` tool becomes for providers without it.
LOCAL_SHELL = "local_shell"
#: Starts every ``encrypted_content`` Switchboard issues (OpenAI's start otherwise: ``gAAAA``).
SEAL_PREFIX = "sb1."
_CUSTOM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as free-form text."}},
    "required": ["input"],
    "additionalProperties": False,
}
_SHELL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "array", "items": {"type": "string"}, "description": "The command and its arguments."},
        "workdir": {"type": "string", "description": "The working directory."},
        "timeout_ms": {"type": "integer", "description": "The time limit in milliseconds."},
    },
    "required": ["command"],
}


class Sealed(msgspec.Struct, omit_defaults=True):
    """What a sealed ``encrypted_content`` holds: a thinking block, or a call's signature (``c`` set)."""

    s: str | None = None  # issuer
    t: str = ""  # thinking text
    g: str | None = None  # signature
    r: str | None = None  # opaque data (redacted thinking, OpenAI encrypted content)
    i: str | None = None  # provider item id
    c: str | None = None  # the call id a signature belongs to


_seal_encoder = msgspec.json.Encoder()
_seal_decoder = msgspec.json.Decoder(Sealed)


def seal(value: Sealed) -> str:
    # Base64 so clients treat it as the opaque token OpenAI's is; not encrypted: nothing in it is secret
    # (the provider gave it to this client), and the provider verifies its own signature on replay.
    return SEAL_PREFIX + base64.urlsafe_b64encode(_seal_encoder.encode(value)).decode().rstrip("=")


def unseal(text: str, where: str) -> Sealed | None:
    """The sealed value, None for encrypted content Switchboard did not issue; a 400 for a damaged one."""
    if not text.startswith(SEAL_PREFIX):
        return None
    raw = text[len(SEAL_PREFIX) :]
    try:
        return _seal_decoder.decode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidRequest(
            f"{where} is not the value Switchboard returned (it was changed or cut); "
            "send reasoning items back exactly as they were received",
            param=where,
        ) from exc


@dataclass(slots=True)
class Shape:
    """What the client declared that the answer must mirror (tool kinds, names, encrypted reasoning)."""

    #: Flat names of custom (freeform) tools.
    custom: set[str] = field(default_factory=set)
    #: Flat name → (namespace, name inside it).
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    local_shell: bool = False
    #: ``include`` asked for ``reasoning.encrypted_content``.
    encrypted: bool = False
    #: Request fields the Response object repeats (instructions, tools, tool_choice, ...).
    echo: dict[str, Any] = field(default_factory=dict)


def flat_name(namespace: str | None, name: str) -> str:
    return f"{namespace}__{name}" if namespace else name


def to_canonical(req: ResponsesRequest, body: dict[str, Any], model: str) -> tuple[Request, Shape]:
    """The canonical request for upstream ``model``, and the :class:`Shape` its answer is encoded with.

    ``body`` is the client's dict (for the fields the Response object echoes as they were sent).
    """
    shape = Shape(encrypted="reasoning.encrypted_content" in (req.include or ()), echo=_echo(body))
    system: list[Text] = [Text(req.instructions)] if req.instructions else []
    items = [MessageItem(role="user", content=req.input)] if isinstance(req.input, str) else req.input
    creq = Request(model=model, messages=_messages(items, system), system=system)
    creq.tools = [tool for spec in req.tools or () for tool in _tools(spec, shape)]
    creq.tool_choice = _choice(req.tool_choice)
    creq.web_search = _asks_web_search(body)
    creq.parallel_tool_calls = req.parallel_tool_calls
    creq.max_tokens = req.max_output_tokens
    creq.temperature, creq.top_p = req.temperature, req.top_p
    if req.reasoning is not None and req.reasoning.effort:
        creq.reasoning_effort = req.reasoning.effort
    if req.text is not None and req.text.format is not None:
        creq.response_format = _format(req.text.format.type, req.text.format)
    if req.text is not None and req.text.verbosity:
        creq.extra["verbosity"] = req.text.verbosity
    creq.stream = bool(req.stream)
    creq.include_usage = True  # response.completed always carries usage
    creq.session_id = req.prompt_cache_key
    creq.user = req.safety_identifier or req.user
    creq.service_tier = req.service_tier
    creq.metadata = req.metadata
    for key in ("truncation", "prompt_cache_retention"):
        if (value := getattr(req, key)) is not None:
            creq.extra[key] = value
    return creq, shape


_ECHOED = (
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "max_output_tokens",
    "metadata",
    "prompt_cache_key",
    "temperature",
    "top_p",
    "service_tier",
    "safety_identifier",
    "user",
)


def _echo(body: dict[str, Any]) -> dict[str, Any]:
    return {key: body[key] for key in _ECHOED if body.get(key) is not None}


# --- input items ------------------------------------------------------------------------------


def _messages(items: list[Any], system: list[Text]) -> list[Message]:
    call_signatures: dict[str, Sealed] = {}
    for i, item in enumerate(items):
        if isinstance(item, ReasoningItem) and item.encrypted_content:
            sealed = unseal(item.encrypted_content, f"input[{i}].encrypted_content")
            if sealed is not None and sealed.c is not None:
                call_signatures[sealed.c] = sealed
    out: list[Message] = []
    names: dict[str, str] = {}  # call id → the (flat) tool name, for Gemini's name-matched results

    def add(role: Any, block: Block) -> None:
        if out and out[-1].role == role:
            out[-1].content.append(block)
        else:
            out.append(Message(role, [block]))

    for i, item in enumerate(items):
        where = f"input[{i}]"
        if isinstance(item, MessageItem):
            if item.role in ("system", "developer"):
                system.append(Text(_plain(item.content)))
            elif item.role == "assistant":
                text = _plain(item.content)
                if text:
                    add("assistant", Text(text))
            else:
                for block in _user_blocks(item.content, f"{where}.content"):
                    add("user", block)
        elif isinstance(item, ReasoningItem):
            thinking = _thinking(item, f"{where}.encrypted_content")
            if thinking is not None:
                add("assistant", thinking)
        elif isinstance(item, FunctionCallItem | CustomToolCallItem | LocalShellCallItem):
            call = _call(item, where)
            if (sig := call_signatures.get(call.id)) is not None:
                call.signature, call.signature_source = sig.g, sig.s
            names[call.id] = call.name
            add("assistant", call)
        elif isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
            content = [b for b in _user_blocks(item.output, f"{where}.output") if isinstance(b, Text | Image)]
            add("tool", ToolResult(item.call_id, content, name=names.get(item.call_id)))
        elif isinstance(item, LocalShellCallOutputItem):
            call_id = item.call_id or item.id or ""
            add("tool", ToolResult(call_id, [Text(item.output)], name=names.get(call_id)))
    return out


def _plain(content: str | list[Part]) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        p.text if isinstance(p, InputText | OutputText) else p.refusal if isinstance(p, Refusal) else ""
        for p in content
    )


def _user_blocks(content: str | list[Part], where: str) -> list[Block]:
    if isinstance(content, str):
        return [Text(content)]
    blocks: list[Block] = []
    for j, part in enumerate(content):
        if isinstance(part, InputText | OutputText):
            blocks.append(Text(part.text))
        elif isinstance(part, Refusal):
            blocks.append(Text(part.refusal))
        elif isinstance(part, InputImage):
            blocks.append(_image(part, f"{where}[{j}]"))
        elif isinstance(part, InputFile):
            raise InvalidRequest(
                f"{where}[{j}]: 'input_file' parts reach only OpenAI Responses upstreams; "
                "send the file's text as input_text, or choose such a model",
                param=f"{where}[{j}]",
            )
    return blocks


def _image(part: InputImage, where: str) -> Image:
    url = part.image_url
    if not url:
        raise InvalidRequest(
            f"{where}: images by file_id need OpenAI's Files API; send the image as a base64 data URL in image_url",
            param=f"{where}.image_url",
        )
    if url.startswith("data:"):
        header, sep, data = url.partition(",")
        if not sep or ";base64" not in header:
            raise InvalidRequest(f"{where}: image data URLs must be base64 ('data:image/png;base64,...')", param=where)
        return Image(media_type=header[5:].split(";", 1)[0] or "image/png", data=data, detail=part.detail)
    if url.startswith(("http://", "https://")):
        return Image(url=url, detail=part.detail)
    raise InvalidRequest(f"{where}: image_url must be an http(s) URL or a base64 data URL", param=f"{where}.image_url")


def _thinking(item: ReasoningItem, where: str) -> Thinking | None:
    summary = "\n\n".join(s.text for s in item.summary) or "\n\n".join(s.text for s in item.content or ())
    if not item.encrypted_content:
        return Thinking(summary, item_id=item.id) if summary else None
    sealed = unseal(item.encrypted_content, where)
    if sealed is None:
        # OpenAI's own encrypted reasoning (from a passthrough turn): no issuer known, so never replayed.
        return Thinking(summary, redacted=item.encrypted_content, item_id=item.id)
    if sealed.c is not None:
        return None  # a call's signature: attached to its call
    return Thinking(sealed.t, signature=sealed.g, redacted=sealed.r, source=sealed.s, item_id=sealed.i)


def _call(item: FunctionCallItem | CustomToolCallItem | LocalShellCallItem, where: str) -> ToolCall:
    if isinstance(item, FunctionCallItem):
        return ToolCall(item.call_id, flat_name(item.namespace, item.name), item.arguments or "{}")
    if isinstance(item, CustomToolCallItem):
        arguments = msgspec.json.encode({"input": item.input}).decode()
        return ToolCall(item.call_id, flat_name(item.namespace, item.name), arguments)
    call_id = item.call_id or item.id
    if not call_id:
        raise InvalidRequest(f"{where}: a local_shell_call needs its call_id", param=f"{where}.call_id")
    action = item.action
    args: dict[str, Any] = {"command": action.command}
    if action.working_directory:
        args["workdir"] = action.working_directory
    if action.timeout_ms is not None:
        args["timeout_ms"] = action.timeout_ms
    return ToolCall(call_id, LOCAL_SHELL, msgspec.json.encode(args).decode())


# --- tools and options ------------------------------------------------------------------------


def _tools(spec: Any, shape: Shape) -> list[Tool]:
    if isinstance(spec, NamespaceTool):
        tools: list[Tool] = []
        for inner in spec.tools:
            flat = flat_name(spec.name, inner.name)
            shape.namespaced[flat] = (spec.name, inner.name)
            tools.append(_tool(inner, flat, shape))
        return tools
    if isinstance(spec, FunctionTool | CustomTool):
        return [_tool(spec, spec.name, shape)]
    shape.local_shell = True
    return [Tool(LOCAL_SHELL, "Runs a command on the user's machine and returns its output.", _SHELL_PARAMETERS)]


def _asks_web_search(body: dict[str, Any]) -> bool:
    """The client offered ``web_search`` / ``web_search_preview`` (dated variants too). :func:`validate`
    left hosted tools out of the typed request, so the client's own dict says."""
    tools = body.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, dict) and isinstance(t.get("type"), str) and t["type"].startswith("web_search") for t in tools
    )


def _tool(spec: FunctionTool | CustomTool, name: str, shape: Shape) -> Tool:
    if isinstance(spec, FunctionTool):
        parameters = spec.parameters or {"type": "object", "properties": {}}
        return Tool(name, spec.description, parameters, spec.strict)
    shape.custom.add(name)
    description = spec.description or ""
    fmt = spec.format
    if fmt is not None and fmt.type == "grammar" and fmt.definition:
        # The grammar is what makes a freeform tool's input valid: the model must see it.
        description += f"\n\nThe input must follow this {fmt.syntax or ''} grammar:\n{fmt.definition}"
    return Tool(name, description.strip() or None, _CUSTOM_PARAMETERS)


def _choice(choice: Any) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return ToolChoice(choice)  # type: ignore[arg-type]
    assert isinstance(choice, NamedChoice)
    if choice.type in ("function", "custom"):
        if not choice.name:
            raise InvalidRequest("tool_choice.name is required", param="tool_choice.name")
        return ToolChoice("tool", flat_name(choice.namespace, choice.name))
    return ToolChoice("required" if choice.mode == "required" else "auto")  # allowed_tools


def _format(kind: str, fmt: Any) -> dict[str, Any] | None:
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        return None
    if not fmt.name:
        raise InvalidRequest("text.format.name is required for json_schema", param="text.format.name")
    spec: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema or {}}
    if fmt.description:
        spec["description"] = fmt.description
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}
