"""Wire API ``bedrock-converse-stream``: Amazon Bedrock's Converse and ConverseStream APIs.

``POST {base_url}/model/{modelId}/converse-stream`` (AWS event-stream answer) or ``/converse`` (JSON) on
``https://bedrock-runtime.{region}.amazonaws.com``. The model id is one path segment, percent-encoded
as botocore encodes it (``:`` → ``%3A``, an ARN's ``/`` → ``%2F``); the transport sends it byte for byte
and :mod:`providers.cloud.bedrock` signs exactly that path.

Entry point: :data:`API`, a :class:`~providers.wire.base.WireAPI`. This module encodes requests; the
answer side (JSON, event stream, error bodies) lives in :mod:`.bedrock_stream`.

Request translation (provider facts §4):

* ``system`` is ``[{text}]``; messages alternate user/assistant; consecutive tool results merge into one
  user message of ``toolResult`` blocks (results first); empty text becomes ``<empty>``.
* Images are ``{image: {format, source: {bytes}}}`` (base64 in JSON); Bedrock cannot fetch URLs.
* Tool-call ids are sanitized to ``[a-zA-Z0-9_-]{1,64}``.
* Thinking (Claude only) goes in ``additionalModelRequestFields``, Claude's own fields: adaptive thinking
  plus ``output_config.effort`` on the adaptive models, else budget thinking with the interleaved-thinking
  beta (:mod:`.claude_rules`, shared with Anthropic's API). Thinking signed by this Bedrock provider
  (:mod:`.replay`) is replayed as ``reasoningContent``; unsigned or foreign thinking is replayed as plain text.
* ``response_format: json_object`` becomes a last system block asking for one JSON object (as on
  Anthropic's API); ``json_schema`` is refused (Converse's ``outputConfig.textFormat`` is not sent yet).
* ``metadata`` becomes ``requestMetadata`` (cost-allocation tags); ``seed``, the penalties and
  ``service_tier`` have no Converse equivalent and are dropped.
* Prompt caching: a ``cachePoint`` after the system blocks and at the end of the last user message, for
  Claude models whose id names a caching model; ``AWS_BEDROCK_FORCE_CACHE=1`` turns it on for ids that
  name no model (application inference profile ARNs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ..canonical import Image, Message, Request, Response, Text, Thinking, Tool, ToolCall, ToolChoice, ToolResult
from ..errors import InvalidRequest, SwitchboardError
from ..urlpath import path_segment
from . import bedrock_stream
from .anthropic_messages import JSON_OBJECT_INSTRUCTION
from .base import StreamDecoder, UpstreamCall, WireAPI, WireTarget
from .claude_rules import INTERLEAVED_THINKING_BETA, plan_thinking, tool_id, unsigned_tool_turn
from .replay import issuer

__all__ = ["API", "NAME", "is_claude", "model_path", "supports_prompt_caching"]

NAME = bedrock_stream.NAME

_EMPTY = "<empty>"
_CACHING = ("fable-5", "sonnet-5", "-4-", "claude-3-7-sonnet", "claude-3-5-haiku")
_SEPARATORS = re.compile(r"[\s_.:]+")
_GOVCLOUD = re.compile(r"^(us-gov\.|arn:aws-us-gov:)|:us-gov-")
_IMAGE_FORMATS = {
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
}
_CACHE_POINT = {"cachePoint": {"type": "default"}}


class _BedrockConverse:
    name = NAME

    def build(self, req: Request, target: WireTarget) -> UpstreamCall:
        claude = is_claude(target)
        signer = issuer(NAME, target)
        body: dict[str, Any] = {"messages": _convert_messages(req.messages, target.provider_name, claude, signer)}
        system = [{"text": t.text} for t in req.system if t.text]
        if system:
            body["system"] = system
        inference = _inference_config(req, target, claude)
        tool_config = _convert_tool_config(req.tools, req.tool_choice, body["messages"])
        if tool_config is not None:
            body["toolConfig"] = tool_config
        extra = _thinking_fields(req, target, body, inference) if claude else None
        if extra:
            body["additionalModelRequestFields"] = extra
            inference.pop("temperature", None)  # Claude refuses sampling changes with thinking on
            inference.pop("topP", None)
        if inference:
            body["inferenceConfig"] = inference
        if req.metadata:
            body["requestMetadata"] = dict(req.metadata)
        if req.response_format is not None:
            _apply_response_format(body, req.response_format, target.provider_name)
        if supports_prompt_caching(target):
            _add_cache_points(body)
        action = "converse-stream" if req.stream else "converse"
        url = f"{target.base_url.rstrip('/')}{model_path(target.model_id, target.provider_name)}/{action}"
        return UpstreamCall(url=url, body=msgspec.json.encode(body), headers={"content-type": "application/json"})

    def decode_response(self, body: bytes, target: WireTarget) -> Response:
        return bedrock_stream.decode_converse(body, target.provider_name, target.model_id, issuer(NAME, target))

    def stream_decoder(self, target: WireTarget) -> StreamDecoder:
        return bedrock_stream.ConverseStreamDecoder(target.provider_name, issuer(NAME, target))

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return bedrock_stream.upstream_error(target.provider_name, status, body, headers)


API: WireAPI = _BedrockConverse()


def model_path(model_id: str, provider: str = NAME) -> str:
    """``/model/{modelId}`` with the id encoded as one path segment, as botocore encodes it."""
    return "/model/" + path_segment(model_id, provider=provider)


def is_claude(target: WireTarget) -> bool:
    """Facts §4: the id or name names an Anthropic Claude model."""
    model_id = target.model_id.lower()
    name = target.model.name.lower() if target.model is not None else ""
    return "anthropic.claude" in model_id or "anthropic/claude" in model_id or "claude" in name


def supports_prompt_caching(target: WireTarget) -> bool:
    candidates = [target.model_id.lower()]
    if target.model is not None:
        candidates.append(target.model.name.lower())
    candidates += [_SEPARATORS.sub("-", c) for c in candidates]
    if not any("claude" in c for c in candidates):
        # An application inference profile ARN names no model; the user vouches for it. Read per request
        # (a dict lookup) so a test or an operator can flip it without a restart.
        return os.environ.get("AWS_BEDROCK_FORCE_CACHE") == "1"
    return any(marker in c for c in candidates for marker in _CACHING)


# --- messages ---------------------------------------------------------------------------------


def _convert_messages(messages: list[Message], provider: str, claude: bool, signer: str) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _convert_blocks(msg, provider, claude, signer, f"messages[{i}]")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda b: "toolResult" not in b)  # stable: results first
    return turns


def _convert_blocks(msg: Message, provider: str, claude: bool, signer: str, where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in msg.content:
        if isinstance(block, Text):
            if block.text.strip():
                out.append({"text": block.text})
        elif isinstance(block, Image):
            out.append(_convert_image(block, provider, where))
        elif isinstance(block, Thinking):
            if msg.role == "assistant" and (replay := _replay_thinking(block, claude, signer)) is not None:
                out.append(replay)
        elif isinstance(block, ToolCall):
            out.append(_convert_tool_call(block, provider, where))
        elif isinstance(block, ToolResult):
            out.append(_convert_tool_result(block, provider, where))
    if not out and any(isinstance(b, Text) for b in msg.content):
        out.append({"text": _EMPTY})
    return out


def _replay_thinking(block: Thinking, claude: bool, signer: str) -> dict[str, Any] | None:
    ours = block.source == signer
    if claude and ours and block.redacted:
        return {"reasoningContent": {"redactedContent": block.redacted}}
    if not block.text:
        return None
    if claude and ours and block.signature:
        return {"reasoningContent": {"reasoningText": {"text": block.text, "signature": block.signature}}}
    if claude:
        return {"text": block.text}  # unsigned thinking cannot be verified: keep it as plain text
    return {"reasoningContent": {"reasoningText": {"text": block.text}}}


def _convert_image(image: Image, provider: str, where: str) -> dict[str, Any]:
    media_type, data = image.media_type, image.data
    if data is None and image.url and image.url.startswith("data:"):
        head, sep, data = image.url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise InvalidRequest(f"{provider} ({NAME}) needs image data URLs in base64", param=where)
        media_type = head.removeprefix("data:").removesuffix(";base64")
    if data is None:
        raise InvalidRequest(
            f"{provider} ({NAME}) cannot fetch image URLs; send the image inline as a base64 data URL",
            param=where,
        )
    fmt = _IMAGE_FORMATS.get((media_type or "").lower())
    if fmt is None:
        raise InvalidRequest(
            f"{provider} ({NAME}) accepts JPEG, PNG, GIF or WebP images, not {media_type or 'this format'}",
            param=where,
        )
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _convert_tool_call(call: ToolCall, provider: str, where: str) -> dict[str, Any]:
    try:
        arguments = msgspec.json.decode(call.arguments) if call.arguments.strip() else {}
    except msgspec.DecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidRequest(
            f"{provider} ({NAME}) needs tool-call arguments to be a JSON object; call {call.id!r} has "
            f"{call.arguments[:80]!r}",
            param=f"{where}.tool_calls",
        )
    return {"toolUse": {"toolUseId": tool_id(call.id), "name": call.name, "input": arguments}}


def _convert_tool_result(result: ToolResult, provider: str, where: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for part in result.content:
        if isinstance(part, Text):
            if part.text:
                content.append({"text": part.text})
        else:
            content.append(_convert_image(part, provider, where))
    return {
        "toolResult": {
            "toolUseId": tool_id(result.tool_call_id),
            "content": content or [{"text": _EMPTY}],
            "status": "error" if result.is_error else "success",
        }
    }


# --- tools, sampling, thinking, caching ---------------------------------------------------------


def _convert_tool_config(
    tools: list[Tool], choice: ToolChoice | None, turns: list[dict[str, Any]]
) -> dict[str, Any] | None:
    if not tools:
        return None
    specs = [_convert_tool(t) for t in tools]
    if choice is not None and choice.mode == "none":
        # Bedrock refuses toolUse/toolResult blocks without a toolConfig: keep the tools, drop the choice.
        uses_tools = any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])
        return {"tools": specs} if uses_tools else None
    config: dict[str, Any] = {"tools": specs}
    if choice is None or choice.mode == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice.mode == "required":
        config["toolChoice"] = {"any": {}}
    elif choice.mode == "tool" and choice.name:
        config["toolChoice"] = {"tool": {"name": choice.name}}
    return config


def _convert_tool(tool: Tool) -> dict[str, Any]:
    schema = dict(tool.parameters) if tool.parameters else {}
    schema.setdefault("type", "object")
    spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": schema}}
    if tool.description:
        spec["description"] = tool.description
    return {"toolSpec": spec}


def _inference_config(req: Request, target: WireTarget, claude: bool) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = req.max_tokens or (target.model.max_tokens if claude and target.model is not None else None)
    if max_tokens:
        config["maxTokens"] = max_tokens
    if req.temperature is not None:
        config["temperature"] = min(max(req.temperature, 0.0), 1.0) if claude else req.temperature
    elif req.top_p is not None:
        config["topP"] = req.top_p
    if req.stop:
        config["stopSequences"] = list(req.stop)
    return config


def _thinking_fields(
    req: Request, target: WireTarget, body: dict[str, Any], inference: dict[str, Any]
) -> dict[str, Any] | None:
    choice = body.get("toolConfig", {}).get("toolChoice", {})
    plan = plan_thinking(
        req,
        target,
        inference.get("maxTokens"),
        forced_tool="any" in choice or "tool" in choice,
        unsigned_turn=unsigned_tool_turn(body["messages"]),
    )
    if plan is None:
        return None
    thinking: dict[str, Any]
    if plan.kind == "adaptive":
        thinking = {"type": "adaptive"}
        fields: dict[str, Any] = {"thinking": thinking, "output_config": {"effort": plan.effort}}
    else:
        inference["maxTokens"] = plan.max_tokens
        thinking = {"type": "enabled", "budget_tokens": plan.budget}
        fields = {"thinking": thinking, "anthropic_beta": [INTERLEAVED_THINKING_BETA]}
    if not _GOVCLOUD.search(target.model_id):
        thinking["display"] = "summarized"  # GovCloud refuses the field
    return fields


def _apply_response_format(body: dict[str, Any], fmt: dict[str, Any], provider: str) -> None:
    kind = fmt.get("type")
    if kind in (None, "text"):
        return
    if kind == "json_object":
        # Converse's structured outputs (outputConfig.textFormat) need a closed schema, and not every
        # Bedrock model has them: asking the model works on all of them.
        body.setdefault("system", []).append({"text": JSON_OBJECT_INSTRUCTION})
        return
    raise InvalidRequest(
        f"{provider} ({NAME}) takes response_format type 'text' or 'json_object' (got {kind!r}); for a "
        "schema, describe it in the prompt and use json_object",
        param="response_format",
    )


def _add_cache_points(body: dict[str, Any]) -> None:
    if body.get("system"):
        body["system"].append(dict(_CACHE_POINT))
    last_user = next((t for t in reversed(body["messages"]) if t["role"] == "user"), None)
    if last_user is not None:
        last_user["content"].append(dict(_CACHE_POINT))
