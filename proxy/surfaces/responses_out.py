"""Canonical answers → OpenAI Responses objects (``"object": "response"``) and Responses event streams.

Output items, in the order the model produced them:

* thinking → ``reasoning`` items (its text as the summary); with ``include: ["reasoning.encrypted_content"]``
  their ``encrypted_content`` is :func:`.responses_in.seal` of the whole block (text, signature,
  opaque data, issuer), so the next turn replays it exactly;
* text → ``message`` items (``output_text``);
* tool calls → ``function_call`` items, or ``custom_tool_call`` / ``local_shell_call`` for tools the
  client declared as such, with a namespaced tool's name and ``namespace`` split back apart
  (:class:`.responses_in.Shape`). A Gemini signature on a call travels in a sealed ``reasoning`` item
  just before it.

The stream of the same items is :mod:`.responses_stream`.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import msgspec

from providers.canonical import (
    FinishReason,
    Response,
    Text,
    Thinking,
    ToolCall,
    Usage,
)
from providers.errors import SwitchboardError

from .responses_in import LOCAL_SHELL, Sealed, Shape, seal

__all__ = [
    "call_item",
    "call_signature_item",
    "encode_response",
    "failure_code",
    "message_item",
    "new_id",
    "reasoning_item",
    "response_object",
]

# How providers word a prompt over the context window (OpenAI, Anthropic, Bedrock, Gemini, vLLM).
_CONTEXT = re.compile(
    r"context.{0,12}(length|window|limit)|too long|too many (input )?tokens|maximum.{0,30}tokens"
    r"|token limit|exceed.{0,30}(context|tokens)",
    re.IGNORECASE,
)
_FAILURE_CODES = frozenset({"context_length_exceeded", "rate_limit_exceeded", "insufficient_quota", "server_error"})


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


def failure_code(exc: SwitchboardError) -> str:
    """The ``error.code`` a Responses client acts on: Codex compacts on ``context_length_exceeded``,
    stops on ``insufficient_quota``, waits on ``rate_limit_exceeded`` and retries ``server_error``."""
    code = exc.code or ""
    if code in _FAILURE_CODES:
        return code
    if "quota" in code or (exc.status in (402, 429) and "quota" in exc.message.lower()):
        return "insufficient_quota"
    if exc.status == 429:
        return "rate_limit_exceeded"
    if exc.status in (400, 413) and ("context" in code or _CONTEXT.search(exc.message)):
        return "context_length_exceeded"
    return "server_error"


# --- whole answers ----------------------------------------------------------------------------


def encode_response(resp: Response, model: str, shape: Shape) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    texts: list[str] = []

    def flush() -> None:
        if texts:
            output.append(message_item(new_id("msg"), "".join(texts)))
            texts.clear()

    for block in resp.content:
        if isinstance(block, Text):
            texts.append(block.text)
            continue
        flush()
        if isinstance(block, Thinking) and (block.text or block.signature or block.redacted):
            output.append(reasoning_item(block, shape))
        elif isinstance(block, ToolCall):
            if block.signature and shape.encrypted:
                output.append(call_signature_item(block.id, block.signature, block.signature_source, shape))
            output.append(call_item(block, new_id("fc"), shape))
    flush()
    return response_object(new_id("resp"), model, shape, output, resp.finish_reason, resp.usage)


def response_object(
    rid: str,
    model: str,
    shape: Shape,
    output: list[dict[str, Any]],
    reason: FinishReason | None,
    usage: Usage | None,
    *,
    created: int | None = None,
) -> dict[str, Any]:
    """A Response object; ``reason`` None: still in progress."""
    echo = shape.echo
    status, incomplete = "completed", None
    if reason is None:
        status = "in_progress"
    elif reason in ("length", "content_filter"):
        status = "incomplete"
        incomplete = {"reason": "max_output_tokens" if reason == "length" else "content_filter"}
    now = int(time.time())
    return {
        "id": rid,
        "object": "response",
        "created_at": created or now,
        "status": status,
        "completed_at": now if status == "completed" else None,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": echo.get("instructions"),
        "max_output_tokens": echo.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "prompt_cache_key": echo.get("prompt_cache_key"),
        "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": echo.get("safety_identifier"),
        "store": False,
        "temperature": echo.get("temperature"),
        "text": echo.get("text") or {"format": {"type": "text"}},
        "tool_choice": echo.get("tool_choice", "auto"),
        "tools": echo.get("tools", []),
        "top_p": echo.get("top_p"),
        "truncation": "disabled",
        "usage": _usage(usage) if usage is not None else None,
        "user": echo.get("user"),
        "metadata": echo.get("metadata", {}),
    }


def _usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = (
        [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
    )
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def reasoning_item(block: Thinking, shape: Shape, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id or new_id("rs"),
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": block.text}] if block.text else [],
    }
    if shape.encrypted:
        item["encrypted_content"] = seal(
            Sealed(s=block.source, t=block.text, g=block.signature, r=block.redacted, i=block.item_id)
        )
    return item


def call_signature_item(call_id: str, signature: str, source: str | None, shape: Shape) -> dict[str, Any]:
    item: dict[str, Any] = {"id": new_id("rs"), "type": "reasoning", "summary": []}
    item["encrypted_content"] = seal(Sealed(s=source, g=signature, c=call_id))
    return item


def call_item(call: ToolCall, item_id: str, shape: Shape, status: str = "completed") -> dict[str, Any]:
    namespace, name = shape.namespaced.get(call.name, (None, call.name))
    if call.name in shape.custom:
        item: dict[str, Any] = {
            "id": item_id,
            "type": "custom_tool_call",
            "status": status,
            "call_id": call.id,
            "name": name,
            "input": _custom_input(call.arguments) if status == "completed" else "",
        }
    elif call.name == LOCAL_SHELL and shape.local_shell:
        action = _shell_action(call.arguments) if status == "completed" else {"type": "exec", "command": [], "env": {}}
        return {"id": item_id, "type": "local_shell_call", "status": status, "call_id": call.id, "action": action}
    else:
        item = {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "call_id": call.id,
            "name": name,
            "arguments": call.arguments if status == "completed" else "",
        }
    if namespace is not None:
        item["namespace"] = namespace
    return item


def _custom_input(arguments: str) -> str:
    """A freeform tool's input out of the one-string-argument function it was offered as."""
    try:
        args = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return arguments
    if isinstance(args, dict):
        if isinstance(args.get("input"), str):
            return str(args["input"])
        strings = [v for v in args.values() if isinstance(v, str)]
        if len(strings) == 1:  # the model renamed the argument
            return str(strings[0])
    return arguments if not isinstance(args, str) else args


def _shell_action(arguments: str) -> dict[str, Any]:
    try:
        args = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        args = {}
    args = args if isinstance(args, dict) else {}
    command = args.get("command")
    if isinstance(command, str):
        command = ["bash", "-lc", command]  # a model may give the line as one string
    action: dict[str, Any] = {"type": "exec", "command": [str(c) for c in command or ()], "env": {}}
    if isinstance(args.get("workdir"), str):
        action["working_directory"] = args["workdir"]
    if isinstance(args.get("timeout_ms"), int):
        action["timeout_ms"] = args["timeout_ms"]
    return action
