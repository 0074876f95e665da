"""Wire API ``openai-responses``: OpenAI's ``POST /responses``.

Spoken by OpenAI and Azure OpenAI, and for some of their models by xAI, GitHub Copilot, Cloudflare AI
Gateway and OpenCode Zen; the ChatGPT Codex backend reuses it (:mod:`.openai_codex_responses`).

Requests are stateless: ``store`` is always false, so earlier turns travel in ``input`` every time, and
reasoning is replayed from the ``encrypted_content`` the API returned (asked for with
``include: ["reasoning.encrypted_content"]``), only to the provider that issued it (:mod:`.replay`:
OpenAI's, Azure's, xAI's and Copilot's are each their own); other reasoning is left out.

Mapping of a canonical :class:`Request`:

* ``system`` → ``instructions`` (joined by a blank line);
* user text/images → ``message`` items with ``input_text`` / ``input_image`` parts;
* assistant text → ``message`` items with ``output_text``; tool calls → ``function_call`` items;
  OpenAI reasoning → ``reasoning`` items (id, summary, encrypted content); tool results →
  ``function_call_output`` items;
* ``reasoning_effort`` → ``reasoning: {effort, summary: "auto"}`` for reasoning (or unknown) models;
  ``temperature``/``top_p`` are left out for reasoning models, which reject them unless effort is none;
* ``stop`` cannot be honoured (the API has no stop sequences): 400; ``n`` other than 1 is refused by
  the surface; ``service_tier`` and ``metadata`` pass on; ``seed`` and the penalties have no
  equivalent and are dropped (logged).

:func:`build_body` returns the body as a dict so the Codex module can edit it before encoding.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from ..canonical import Image, Message, Request, Response, Text, Thinking, Tool, ToolCall, ToolChoice, ToolResult
from ..errors import InvalidRequest, SwitchboardError, UpstreamError
from ..registry import Model
from .base import UpstreamCall, WireTarget
from .openai_completions import upstream_error
from .openai_responses_stream import SOURCE, ResponsesStreamDecoder, finish_reason, usage_from
from .replay import issuer

__all__ = ["API", "SOURCE", "OpenAIResponses", "build_body", "decode_response", "responses_url"]

log = logging.getLogger("switchboard")

_MIN_OUTPUT_TOKENS = 16
_MAX_CACHE_KEY = 64
_MAX_SAFETY_ID = 128
_IMAGE_DETAILS = frozenset({"low", "high", "auto", "original"})
#: Client fields the Responses API takes under the same name.
_PASSTHROUGH = ("prompt_cache_retention", "safety_identifier", "truncation")
#: Client fields with no Responses equivalent whose absence changes only sampling details, not the answer's shape.
_DROPPABLE = ("logit_bias", "logprobs", "top_logprobs")


class OpenAIResponses:
    name = "openai-responses"

    def build(self, req: Request, target: WireTarget) -> UpstreamCall:
        body = build_body(req, target)
        return UpstreamCall(responses_url(target.base_url), msgspec.json.encode(body), _session_headers(req))

    def decode_response(self, body: bytes, target: WireTarget) -> Response:
        return decode_response(body, target)

    def stream_decoder(self, target: WireTarget) -> ResponsesStreamDecoder:
        return ResponsesStreamDecoder(target.provider_name, issuer(SOURCE, target))

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return upstream_error(target.provider_name, status, body, headers)


API = OpenAIResponses()


def responses_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/responses"


def build_body(req: Request, target: WireTarget, api: str = SOURCE) -> dict[str, Any]:
    """The ``/responses`` request body; raises :class:`InvalidRequest` for what the API cannot honour.

    Only reasoning issued by ``target`` over ``api`` is replayed (encrypted content is bound to the
    service that issued it); Codex passes its own API name.
    """
    if req.stop:
        raise InvalidRequest(
            f"'stop' is not supported by the OpenAI Responses API that {target.provider_name} "
            f"uses for {target.model_id}; remove the stop sequences",
            param="stop",
        )
    body: dict[str, Any] = {"model": target.model_id}
    instructions = "\n\n".join(t.text for t in req.system if t.text)
    if instructions:
        body["instructions"] = instructions
    body["input"] = _convert_messages(req.messages, target, issuer(api, target))
    if req.tools:
        body["tools"] = [_convert_tool(t) for t in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = _convert_tool_choice(req.tool_choice)
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        body["max_output_tokens"] = max(req.max_tokens, _MIN_OUTPUT_TOKENS)
    effort = _add_reasoning(body, req, target.model)
    _add_sampling(body, req, target.model, effort)
    if req.response_format is not None and (fmt := _convert_response_format(req.response_format)) is not None:
        body["text"] = {"format": fmt}
    body["store"] = False
    body["stream"] = req.stream
    if req.session_id:
        body["prompt_cache_key"] = req.session_id[:_MAX_CACHE_KEY]
    if req.user:
        body["safety_identifier"] = _safety_identifier(req.user)
    if req.service_tier is not None:
        body["service_tier"] = req.service_tier
    if req.metadata:
        body["metadata"] = dict(req.metadata)
    _add_extra(body, req, target)
    return body


def decode_response(body: bytes, target: WireTarget, api: str = SOURCE) -> Response:
    """A Response object (``"object": "response"``) as a canonical :class:`Response`."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise UpstreamError(f"{target.provider_name}: the answer is not valid JSON ({exc})", status=502) from exc
    if not isinstance(data, dict):
        raise UpstreamError(f"{target.provider_name}: the answer is not a Response object", status=502)
    resp = Response(id=str(data.get("id") or ""), model=str(data.get("model") or target.model_id))
    refused = False
    source = issuer(api, target)
    for item in data.get("output") or ():
        refused = _decode_item(item, resp, source) or refused
    has_calls = any(isinstance(b, ToolCall) for b in resp.content)
    resp.finish_reason = finish_reason(data, has_calls, refused)
    resp.usage = usage_from(data.get("usage"))
    return resp


# --- request ----------------------------------------------------------------------------------


def _convert_messages(messages: list[Message], target: WireTarget, source: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    message_ids = itertools.count()
    for msg in messages:
        if msg.role == "assistant":
            items.extend(_convert_assistant(msg, message_ids, source))
        else:
            items.extend(_convert_input(msg, target))
    return items


def _convert_input(msg: Message, target: WireTarget) -> Iterator[dict[str, Any]]:
    """User text and images as message items; tool results as ``function_call_output`` items, in order."""
    parts: list[dict[str, Any]] = []
    for block in msg.content:
        if isinstance(block, Text):
            parts.append({"type": "input_text", "text": block.text})
        elif isinstance(block, Image):
            parts.append(_convert_image(block, target))
        elif isinstance(block, ToolResult):
            if parts:
                yield {"type": "message", "role": "user", "content": parts}
                parts = []
            yield _convert_tool_result(block, target)
    if parts:
        yield {"type": "message", "role": "user", "content": parts}


def _convert_assistant(msg: Message, message_ids: Iterator[int], source: str) -> Iterator[dict[str, Any]]:
    for block in msg.content:
        if isinstance(block, Text) and block.text:
            # An output message needs an id; with store=false it only has to be unique in this request.
            yield {
                "type": "message",
                "role": "assistant",
                "id": f"msg_{next(message_ids)}",
                "status": "completed",
                "content": [{"type": "output_text", "text": block.text, "annotations": []}],
            }
        elif isinstance(block, ToolCall):
            yield {"type": "function_call", "call_id": block.id, "name": block.name, "arguments": block.arguments}
        elif isinstance(block, Thinking) and (item := _convert_reasoning(block, source)) is not None:
            yield item


def _convert_reasoning(block: Thinking, source: str) -> dict[str, Any] | None:
    # Without encrypted content the API would look the item up by id, which store=false never kept.
    if block.source != source or not block.redacted:
        return None
    item: dict[str, Any] = {"type": "reasoning"}
    if block.item_id:
        item["id"] = block.item_id
    item["summary"] = [{"type": "summary_text", "text": block.text}] if block.text else []
    item["encrypted_content"] = block.redacted
    return item


def _convert_image(img: Image, target: WireTarget) -> dict[str, Any]:
    model = target.model
    if model is not None and "image" not in model.input:
        raise InvalidRequest(
            f"{target.provider_name} model {target.model_id} does not accept images; "
            "remove the image parts or choose a model with image input",
            param="messages",
        )
    if img.data:
        url = f"data:{img.media_type or 'image/png'};base64,{img.data}"
    elif img.url:
        url = img.url
    else:
        raise InvalidRequest("an image part has neither data nor a URL", param="messages")
    detail = img.detail if img.detail in _IMAGE_DETAILS else "auto"
    return {"type": "input_image", "image_url": url, "detail": detail}


def _convert_tool_result(result: ToolResult, target: WireTarget) -> dict[str, Any]:
    output: str | list[dict[str, Any]]
    if any(isinstance(c, Image) for c in result.content):
        output = [
            {"type": "input_text", "text": c.text} if isinstance(c, Text) else _convert_image(c, target)
            for c in result.content
        ]
    else:
        output = "\n".join(c.text for c in result.content if isinstance(c, Text))
    return {"type": "function_call_output", "call_id": result.tool_call_id, "output": output}


def _convert_tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["parameters"] = tool.parameters
    out["strict"] = tool.strict is True  # strict schemas reject optional fields: only when the client asked
    return out


def _convert_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode != "tool":
        return choice.mode
    if not choice.name:
        raise InvalidRequest("tool_choice names no function", param="tool_choice")
    return {"type": "function", "name": choice.name}


def _convert_response_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidRequest("response_format.json_schema.name is required", param="response_format")
        out: dict[str, Any] = {"type": "json_schema", "name": spec["name"], "schema": spec.get("schema") or {}}
        if spec.get("description"):
            out["description"] = spec["description"]
        if spec.get("strict") is not None:
            out["strict"] = bool(spec["strict"])
        return out
    if kind == "text":
        return {"type": "text"}
    raise InvalidRequest(f"response_format type {kind!r} is not supported", param="response_format")


def _add_reasoning(body: dict[str, Any], req: Request, model: Model | None) -> str | None:
    """Set ``reasoning``/``include``; returns the effort sent (None when none was)."""
    capable = model is None or model.reasoning
    effort = _map_effort(req.reasoning_effort, model) if capable else None
    if req.reasoning_effort and not capable:
        log.debug("reasoning_effort dropped: %s is not a reasoning model", model.id if model else "?")
    if effort == "none":
        body["reasoning"] = {"effort": "none"}
    elif effort:
        body["reasoning"] = {"effort": effort, "summary": "auto"}
    # A known reasoning model reasons by default: ask for the encrypted content so the turn can be replayed.
    if (effort and effort != "none") or (model is not None and model.reasoning):
        body["include"] = ["reasoning.encrypted_content"]
    return effort


def _map_effort(effort: str | None, model: Model | None) -> str | None:
    if not effort:
        return None
    level_map = model.thinking_level_map if model is not None else None
    key = "off" if effort in ("none", "off") else effort
    if level_map is not None and key in level_map:
        mapped = level_map[key]
        if mapped is None:
            return None  # this model cannot honour that level; the provider default applies
        return "none" if mapped == "off" else mapped
    return "none" if key == "off" else effort


def _add_sampling(body: dict[str, Any], req: Request, model: Model | None, effort: str | None) -> None:
    if req.temperature is None and req.top_p is None:
        return
    if model is not None and model.reasoning and effort != "none":
        # Reasoning models answer 400 to temperature/top_p unless reasoning is off (gpt-5.1 and later).
        log.debug("temperature/top_p dropped for reasoning model %s", model.id)
        return
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p


def _add_extra(body: dict[str, Any], req: Request, target: WireTarget) -> None:
    extra = req.extra
    sampling = {"seed": req.seed, "presence_penalty": req.presence_penalty, "frequency_penalty": req.frequency_penalty}
    dropped = [k for k, v in sampling.items() if v is not None] + [k for k in _DROPPABLE if extra.get(k) is not None]
    if dropped:
        log.warning("%s: dropped %s (not supported by the Responses API)", target.provider_name, ", ".join(dropped))
    if not extra:
        return
    for key in _PASSTHROUGH:
        if extra.get(key) is not None:
            body[key] = extra[key]
    if extra.get("verbosity") is not None:
        body.setdefault("text", {})["verbosity"] = extra["verbosity"]


def _safety_identifier(user: str) -> str:
    if len(user) <= _MAX_SAFETY_ID:
        return user
    return hashlib.sha256(user.encode()).hexdigest()  # stable, and within the API's 128-character limit


def _session_headers(req: Request) -> dict[str, str]:
    sid = req.session_id
    if not sid or not sid.isascii() or not sid.isprintable():
        return {}
    return {"session_id": sid, "x-client-request-id": sid}


# --- response ---------------------------------------------------------------------------------


def _decode_item(item: Any, resp: Response, source: str) -> bool:
    """Append one output item's blocks; returns whether it was a refusal."""
    if not isinstance(item, dict):
        return False
    kind = item.get("type")
    refused = False
    if kind == "message":
        for part in item.get("content") or ():
            if not isinstance(part, dict):
                continue
            if part.get("type") == "output_text":
                _append_text(resp, str(part.get("text") or ""))
            elif part.get("type") == "refusal":
                refused = True
                _append_text(resp, str(part.get("refusal") or ""))
    elif kind == "function_call":
        resp.content.append(
            ToolCall(str(item.get("call_id") or ""), str(item.get("name") or ""), item.get("arguments") or "{}")
        )
    elif kind == "reasoning":
        summary = [str(s.get("text") or "") for s in item.get("summary") or () if isinstance(s, dict)]
        if not summary:  # open-weight servers return the raw reasoning as content instead
            summary = [str(c.get("text") or "") for c in item.get("content") or () if isinstance(c, dict)]
        text = "\n\n".join(summary)
        if text or item.get("encrypted_content"):
            resp.content.append(
                Thinking(text, redacted=item.get("encrypted_content"), source=source, item_id=item.get("id"))
            )
    return refused


def _append_text(resp: Response, text: str) -> None:
    last = resp.content[-1] if resp.content else None
    if isinstance(last, Text):
        last.text += text
    elif text:
        resp.content.append(Text(text))
