"""Wire API ``anthropic-messages``: Anthropic's Messages API and the servers that copy it.

``POST {base_url}/v1/messages`` (the base URL has no ``/v1``, as the Anthropic SDK expects) with
``anthropic-version: 2023-06-01``. Spoken by Anthropic, MiniMax, Kimi for Coding and Cloudflare AI
Gateway, and for their Claude models by GitHub Copilot, OpenCode Zen, OpenCode Go and Google Vertex AI
(``rawPredict``, when the target says ``vertex_raw_predict``; see :mod:`.google_vertex`). Claude on
Bedrock shares this module's rules through :mod:`.claude_rules`.

Entry point: :data:`API`, a :class:`~providers.wire.base.WireAPI`. This module encodes requests; the
answer side (JSON, SSE stream, error bodies) lives in :mod:`.anthropic_stream`.

Request translation:

* ``system`` is a list of text blocks. A Claude Pro/Max OAuth token (``sk-ant-oat``) is sent as
  ``Authorization: Bearer`` with the Claude Code beta flags, and the system prompt must start with the
  Claude Code identity block, or Anthropic refuses the token.
* Messages become strictly alternating user/assistant turns: consecutive same-role messages merge, tool
  results are ``tool_result`` blocks at the start of a user turn.
* Thinking is replayed only to the service that signed it (:mod:`.replay`: the same provider and
  account); thinking signed elsewhere cannot be verified and is dropped.
* ``reasoning_effort`` becomes budget thinking, or adaptive thinking plus ``output_config.effort`` on the
  models that have it (:mod:`.claude_rules`, shared with Bedrock).
* ``seed``, the penalties and ``service_tier`` are dropped (Anthropic's tiers are not OpenAI's); ``user`` (else
  ``metadata.user_id``) becomes ``metadata.user_id``, the only metadata Anthropic accepts.
* Prompt caching: the client's own ``cache_control`` passes through; automatic breakpoints go on the
  last system block and the last block of the last user turn, four breakpoints at most in all.
* ``response_format``: ``json_schema`` becomes ``output_config.format`` (structured outputs);
  ``json_object`` becomes a last system block asking for one JSON object (:data:`JSON_OBJECT_INSTRUCTION`).
* ``web_search`` adds Anthropic's hosted search tool (:data:`WEB_SEARCH_TOOL`) to ``tools``; Anthropic
  runs it within the turn, and the answer's search blocks are skipped (only the cited text comes back).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ..canonical import Image, Message, Request, Response, Text, Thinking, Tool, ToolCall, ToolChoice, ToolResult
from ..errors import InvalidRequest, SwitchboardError
from . import anthropic_stream, google_vertex
from .base import StreamDecoder, UpstreamCall, WireAPI, WireTarget
from .claude_rules import INTERLEAVED_THINKING_BETA, oauth_token, plan_thinking, tool_id, unsigned_tool_turn
from .replay import issuer

__all__ = [
    "API",
    "CLAUDE_CODE_IDENTITY",
    "JSON_OBJECT_INSTRUCTION",
    "NAME",
    "OAUTH_BETAS",
    "OAUTH_HEADERS",
    "WEB_SEARCH_TOOL",
]

NAME = anthropic_stream.NAME
CLAUDE_CODE_IDENTITY = "You are Claude Code, Anthropic's official CLI for Claude."

_VERSION = "2023-06-01"
OAUTH_BETAS = ("claude-code-20250219", "oauth-2025-04-20")
OAUTH_HEADERS = {
    "user-agent": "claude-cli/2.1.75",
    "x-app": "cli",
    "anthropic-dangerous-direct-browser-access": "true",
}
#: The account family of a Claude Pro/Max token: it signs apart from API keys (:mod:`.replay`).
_SUBSCRIPTION = "subscription"
_DEFAULT_MAX_TOKENS = 8192
_MAX_BREAKPOINTS = 4
_EPHEMERAL = {"type": "ephemeral"}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Opus 4.7+ and the generation-5 models reject temperature/top_p ("deprecated for this model").
_NO_SAMPLING = re.compile(r"opus-4-[78]|(?:opus|sonnet|haiku|fable|mythos)-5")
#: ``response_format: {"type": "json_object"}`` for an API whose structured outputs need a closed schema
#: (Anthropic's, Bedrock's): the last system block. Claude otherwise often fences JSON in Markdown.
JSON_OBJECT_INSTRUCTION = (
    "Answer with a single JSON object and nothing else: no text before or after it and no Markdown code fence."
)
#: Anthropic's hosted web search, offered when the client offered its own (``Request.web_search``); its
#: ``server_tool_use`` / ``web_search_tool_result`` answer blocks are skipped by :mod:`.anthropic_stream`.
WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}
_WEB_SEARCH_PROVIDERS = frozenset({"anthropic"})


class _AnthropicMessages:
    name = NAME

    def build(self, req: Request, target: WireTarget) -> UpstreamCall:
        _reject_unsupported(req, target)
        token = oauth_token(target.auth_headers)
        vertex = target.vertex_raw_predict
        # Vertex names its own Messages version in the body, the model in the URL.
        headers = {} if vertex else {"anthropic-version": _VERSION}
        betas: list[str] = []
        if token is not None:
            headers.update(OAUTH_HEADERS)
            headers["authorization"] = f"Bearer {token}"
            headers["x-api-key"] = ""  # removes the credential's header
            betas.extend(OAUTH_BETAS)
        signer = issuer(NAME, target, _SUBSCRIPTION if token is not None else "")
        messages = _convert_messages(req.messages, target.provider_name, signer)
        default_max = target.model.max_tokens if target.model is not None else _DEFAULT_MAX_TOKENS
        body: dict[str, Any] = (
            {"anthropic_version": google_vertex.ANTHROPIC_VERSION} if vertex else {"model": target.model_id}
        )
        body["max_tokens"] = req.max_tokens or default_max
        system = _convert_system(req.system, oauth=token is not None)
        if system:
            body["system"] = system
        body["messages"] = messages
        # Only Anthropic itself runs its hosted search: other Anthropic-speaking servers (Kimi, MiniMax,
        # Copilot, Vertex) may refuse the tool, and a hosted tool must never make a request fail.
        web_search = req.web_search and target.provider_id in _WEB_SEARCH_PROVIDERS and not vertex
        if req.tools or web_search:
            body["tools"] = _convert_tools(req.tools) + ([dict(WEB_SEARCH_TOOL)] if web_search else [])
            choice = _convert_tool_choice(req.tool_choice, req.parallel_tool_calls)
            # With search alone, "any"/"tool" would force a search (or name no tool): the choice was
            # about the client's functions, and there are none.
            if choice is not None and (req.tools or choice["type"] in ("auto", "none")):
                body["tool_choice"] = choice
        if req.stop:
            body["stop_sequences"] = list(req.stop)
        thinking = _apply_thinking(body, req, target)
        if thinking == "budget" and req.tools:
            betas.append(INTERLEAVED_THINKING_BETA)
        if thinking is None and not _NO_SAMPLING.search(target.model_id):
            _apply_sampling(body, req)
        if req.response_format is not None:
            _apply_response_format(body, req.response_format, target.provider_name)
        user = req.user or (req.metadata or {}).get("user_id")
        if user:
            body["metadata"] = {"user_id": user}
        if req.stream:
            body["stream"] = True
        _add_cache_breakpoints(body)
        if betas:
            headers["anthropic-beta"] = _merge_betas(target.auth_headers, betas)
        if vertex:
            url = google_vertex.raw_predict_url(target, stream=req.stream)
        else:
            url = target.base_url.rstrip("/") + "/v1/messages"
        return UpstreamCall(url=url, body=msgspec.json.encode(body), headers=headers)

    def decode_response(self, body: bytes, target: WireTarget) -> Response:
        return anthropic_stream.decode_message(body, target.provider_name, _issuer(target))

    def stream_decoder(self, target: WireTarget) -> StreamDecoder:
        return anthropic_stream.MessageStreamDecoder(target.provider_name, _issuer(target))

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return anthropic_stream.upstream_error(target.provider_name, status, body, headers)


API: WireAPI = _AnthropicMessages()


def _issuer(target: WireTarget) -> str:
    return issuer(NAME, target, _SUBSCRIPTION if oauth_token(target.auth_headers) is not None else "")


def _reject_unsupported(req: Request, target: WireTarget) -> None:
    extra = req.extra
    if not extra:
        return
    if extra.get("audio") or "audio" in (extra.get("modalities") or ()):
        raise InvalidRequest(
            f"{target.provider_name} ({NAME}) cannot produce audio output; remove 'audio' and 'modalities'",
            param="audio",
        )
    if extra.get("logprobs"):
        raise InvalidRequest(f"{target.provider_name} ({NAME}) does not return logprobs", param="logprobs")


def _merge_betas(auth_headers: Mapping[str, str], betas: list[str]) -> str:
    configured = next((v for k, v in auth_headers.items() if k.lower() == "anthropic-beta"), "")
    merged = [b.strip() for b in configured.split(",") if b.strip()]
    merged += [b for b in betas if b not in merged]
    return ",".join(merged)


def _convert_system(system: list[Text], *, oauth: bool) -> list[dict[str, Any]]:
    blocks = [_text_block(t) for t in system if t.text]
    if oauth:
        blocks.insert(0, {"type": "text", "text": CLAUDE_CODE_IDENTITY})
    return blocks


def _text_block(text: Text) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text.text}
    if text.cache_control:
        block["cache_control"] = dict(text.cache_control)
    return block


def _convert_messages(messages: list[Message], provider: str, signer: str) -> list[dict[str, Any]]:
    """Alternating turns: consecutive same-role messages merge; tool results lead their user turn."""
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _convert_blocks(msg, provider, signer, f"messages[{i}]")
        if not blocks:
            continue  # an empty turn is invalid; dropping it keeps the rest valid
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user" and len(turn["content"]) > 1:
            turn["content"].sort(key=lambda b: b["type"] != "tool_result")  # stable: results first
    return turns


def _convert_blocks(msg: Message, provider: str, signer: str, where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in msg.content:
        if isinstance(block, Text):
            if block.text:
                out.append(_text_block(block))
        elif isinstance(block, Image):
            out.append(_convert_image(block, provider, where))
        elif isinstance(block, Thinking):
            if msg.role == "assistant" and (replay := _replay_thinking(block, signer)) is not None:
                out.append(replay)
        elif isinstance(block, ToolCall):
            out.append(_convert_tool_call(block, provider, where))
        elif isinstance(block, ToolResult):
            out.append(_convert_tool_result(block, provider, where))
    return out


def _replay_thinking(block: Thinking, signer: str) -> dict[str, Any] | None:
    if block.source != signer:
        return None  # Anthropic cannot verify it, and refuses unsigned thinking blocks
    if block.redacted:
        return {"type": "redacted_thinking", "data": block.redacted}
    if block.signature:
        return {"type": "thinking", "thinking": block.text, "signature": block.signature}
    return None


def _convert_image(image: Image, provider: str, where: str) -> dict[str, Any]:
    media_type, data = image.media_type, image.data
    if data is None and image.url and image.url.startswith("data:"):
        media_type, data = _parse_data_url(image.url, provider, where)
    if data is not None:
        if media_type not in _IMAGE_TYPES:
            raise InvalidRequest(
                f"{provider} ({NAME}) accepts JPEG, PNG, GIF or WebP images, not {media_type or 'this format'}",
                param=where,
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if image.url and image.url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    raise InvalidRequest(f"{provider} ({NAME}) needs images as base64 data or an http(s) URL", param=where)


def _parse_data_url(url: str, provider: str, where: str) -> tuple[str | None, str]:
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise InvalidRequest(f"{provider} ({NAME}) needs image data URLs in base64", param=where)
    return head.removeprefix("data:").removesuffix(";base64") or None, data


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
    return {"type": "tool_use", "id": tool_id(call.id), "name": call.name, "input": arguments}


def _convert_tool_result(result: ToolResult, provider: str, where: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(result.tool_call_id)}
    content = [
        _text_block(part) if isinstance(part, Text) else _convert_image(part, provider, where)
        for part in result.content
        if not isinstance(part, Text) or part.text
    ]
    if content:
        block["content"] = content
    if result.is_error:
        block["is_error"] = True
    return block


def _convert_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        schema = dict(tool.parameters) if tool.parameters else {}
        schema.setdefault("type", "object")
        # ``strict`` is left out: Anthropic's strict tools accept a narrower JSON Schema subset than
        # OpenAI's, so passing it on would turn working OpenAI tool definitions into 400s.
        spec: dict[str, Any] = {"name": tool.name, "input_schema": schema}
        if tool.description:
            spec["description"] = tool.description
        if tool.cache_control:
            spec["cache_control"] = dict(tool.cache_control)
        out.append(spec)
    return out


def _convert_tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None:
        converted: dict[str, Any] | None = {"type": "auto"} if parallel is False else None
    elif choice.mode == "none":
        return {"type": "none"}
    elif choice.mode == "required":
        converted = {"type": "any"}
    elif choice.mode == "tool" and choice.name:
        converted = {"type": "tool", "name": choice.name}
    else:
        converted = {"type": "auto"}
    if converted is not None and parallel is False:
        converted["disable_parallel_tool_use"] = True
    return converted


def _apply_thinking(body: dict[str, Any], req: Request, target: WireTarget) -> str | None:
    """Set ``thinking`` (and ``output_config.effort``); returns "budget", "adaptive" or None."""
    forced = body.get("tool_choice", {}).get("type") in ("any", "tool")  # the client's explicit choice wins
    plan = plan_thinking(
        req, target, body["max_tokens"], forced_tool=forced, unsigned_turn=unsigned_tool_turn(body["messages"])
    )
    if plan is None:
        return None
    if plan.kind == "adaptive":
        # Newer models default to omitting the thinking text; clients asked for reasoning, so show it.
        body["thinking"] = {"type": "adaptive", "display": "summarized"}
        body["output_config"] = {"effort": plan.effort}
    else:
        body["max_tokens"] = plan.max_tokens
        body["thinking"] = {"type": "enabled", "budget_tokens": plan.budget}
    return plan.kind


def _apply_sampling(body: dict[str, Any], req: Request) -> None:
    # Anthropic's temperature range is 0..1 (OpenAI's 0..2), and recent models refuse temperature and
    # top_p together; temperature is the one clients mean.
    if req.temperature is not None:
        body["temperature"] = min(max(req.temperature, 0.0), 1.0)
    elif req.top_p is not None:
        body["top_p"] = req.top_p
    top_k = req.extra.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        body["top_k"] = top_k


def _apply_response_format(body: dict[str, Any], fmt: dict[str, Any], provider: str) -> None:
    kind = fmt.get("type")
    if kind in (None, "text"):
        return
    if kind == "json_object":
        # Structured outputs cannot say "any object": Anthropic refuses an object schema unless it has
        # additionalProperties: false, which would admit only {}. The model is asked instead, as OpenAI's
        # own JSON mode requires the prompt to ask; a client-side parse stays the check.
        body.setdefault("system", []).append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
        return
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if kind != "json_schema" or not isinstance(schema, dict):
        raise InvalidRequest(
            f"{provider} ({NAME}) takes response_format type 'text', 'json_object', or 'json_schema' with "
            f"json_schema.schema set to a JSON schema object (got type {kind!r})",
            param="response_format",
        )
    body.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": schema}


def _add_cache_breakpoints(body: dict[str, Any]) -> None:
    """Automatic breakpoints after the client's own, never more than Anthropic's four."""
    system, messages = body.get("system"), body["messages"]
    used = _count_cache_control(system) + _count_cache_control(body.get("tools")) + _count_cache_control(messages)
    if system and used < _MAX_BREAKPOINTS and "cache_control" not in system[-1]:
        system[-1]["cache_control"] = dict(_EPHEMERAL)
        used += 1
    if used >= _MAX_BREAKPOINTS:
        return
    for turn in reversed(messages):
        if turn["role"] == "user":
            block = turn["content"][-1]
            if "cache_control" not in block:
                block["cache_control"] = dict(_EPHEMERAL)
            return


def _count_cache_control(value: Any) -> int:
    # Loops, not sum() over generators: this runs on every request, over every block.
    if isinstance(value, dict):
        value = [value]
    elif not isinstance(value, list):
        return 0
    count = 0
    for item in value:
        if isinstance(item, dict):
            if "cache_control" in item:
                count += 1
            content = item.get("content")
            if isinstance(content, list | dict):
                count += _count_cache_control(content)
        elif isinstance(item, list):
            count += _count_cache_control(item)
    return count
