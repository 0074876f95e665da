"""Wire API ``openai-completions`` through the canonical model: for surfaces other than OpenAI chat.

The OpenAI chat surface reaches these upstreams by passthrough (:mod:`.openai_completions`); the
Messages and Responses surfaces need a translation, which is this module (decoding side:
:mod:`.openai_chat_stream`). Mapping of a canonical :class:`Request`:

* ``system`` → one ``system`` message per text (``developer`` for known reasoning models; the compat
  edits turn it back into ``system`` where the provider has no developer role);
* user text/images → ``user`` messages (a single text as a string, else ``text`` / ``image_url`` parts,
  inline images as base64 data URLs);
* assistant text + tool calls → one ``assistant`` message with ``tool_calls``; its thinking is sent back
  as ``reasoning_content`` (``reasoning`` for OpenRouter) only to providers whose thinking format keeps
  reasoning across turns (DeepSeek, Z.ai, Qwen's chat template), and only reasoning they issued or that
  carries no issuer; elsewhere it is left out (OpenAI's chat API has no reasoning input);
* tool results → one ``tool`` message each (text only; an error result is prefixed ``Error:``); images in
  tool results follow in a ``user`` message, as the chat API has no images in tool messages;
* ``max_tokens`` → ``max_completion_tokens``, then the provider's compat edits
  (:func:`.openai_completions.adapt_request`: max-tokens field, developer role, ``store``, reasoning
  format, strict mode, ``stream_options``); streams ask for ``stream_options.include_usage``;
* ``reasoning_effort`` is dropped for models the catalog knows are not reasoning models (OpenAI answers
  400); ``verbosity`` and ``prompt_cache_retention`` (Responses clients) pass on; ``thinking_budget``,
  ``metadata`` (only kept with ``store``) and Anthropic's ``top_k`` (OpenAI refuses it) are dropped.

Reasoning in answers (``reasoning_content`` / ``reasoning``) becomes :class:`Thinking` with no signature,
tagged with this target's issuer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from ..canonical import Image, Message, Request, Response, Text, Thinking, Tool, ToolCall, ToolResult
from ..errors import SwitchboardError, UpstreamError
from ..registry import Compat
from .base import UpstreamCall, WireTarget
from .openai_chat_stream import SOURCE, ChatStreamDecoder, arguments_text, as_dict, finish_reason, usage_from
from .openai_completions import adapt_request, chat_url, upstream_error
from .replay import issuer

__all__ = ["API", "SOURCE", "ChatStreamDecoder", "OpenAIChatWire", "build_body", "decode_response"]

#: Thinking formats whose servers take earlier reasoning back on assistant messages, and the field.
_REPLAY_FIELD = {"deepseek": "reasoning_content", "zai": "reasoning_content", "qwen-chat-template": "reasoning_content"}
_REPLAY_FIELD["openrouter"] = "reasoning"
#: Client fields (``Request.extra``, from the Responses surface) chat completions takes under the same name.
_PASSTHROUGH = ("verbosity", "prompt_cache_retention")
_SAMPLING = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "user", "service_tier")


class OpenAIChatWire:
    name = SOURCE

    def build(self, req: Request, target: WireTarget) -> UpstreamCall:
        return UpstreamCall(chat_url(target.base_url), msgspec.json.encode(build_body(req, target)))

    def decode_response(self, body: bytes, target: WireTarget) -> Response:
        return decode_response(body, target)

    def stream_decoder(self, target: WireTarget) -> ChatStreamDecoder:
        return ChatStreamDecoder(target.provider_name, issuer(SOURCE, target))

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return upstream_error(target.provider_name, status, body, headers)


API = OpenAIChatWire()


def build_body(req: Request, target: WireTarget) -> dict[str, Any]:
    """The ``/chat/completions`` body, compat edits applied (never raises)."""
    model = target.model
    system_role = "developer" if model is not None and model.reasoning else "system"
    messages: list[dict[str, Any]] = [{"role": system_role, "content": t.text} for t in req.system if t.text]
    replay = _replay_field(target.compat)
    source = issuer(SOURCE, target)
    for msg in req.messages:
        if msg.role == "assistant":
            messages.extend(_assistant(msg, replay, source))
        else:
            messages.extend(_input(msg))
    body: dict[str, Any] = {"model": target.model_id, "messages": messages}
    if req.tools:
        body["tools"] = [_tool(t) for t in req.tools]
        # Without tools the API refuses tool_choice and parallel_tool_calls.
        if (choice := req.tool_choice) is not None:
            named = {"type": "function", "function": {"name": choice.name}}
            body["tool_choice"] = named if choice.mode == "tool" else choice.mode
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.max_tokens is not None:
        body["max_completion_tokens"] = req.max_tokens  # adapt_request renames it where the provider wants
    for key in _SAMPLING:
        if (value := getattr(req, key)) is not None:
            body[key] = value
    if req.stop:
        body["stop"] = req.stop
    if req.reasoning_effort and (model is None or model.reasoning):
        body["reasoning_effort"] = req.reasoning_effort
    if req.response_format is not None:
        body["response_format"] = req.response_format  # the canonical shape is chat's own
    if req.session_id:
        body["prompt_cache_key"] = req.session_id
    for key in _PASSTHROUGH:
        if req.extra.get(key) is not None:
            body[key] = req.extra[key]
    body["stream"] = req.stream
    if req.stream:
        body["stream_options"] = {"include_usage": True}  # dropped by adapt_request where unsupported
    adapt_request(body, target.model_id, target.compat, model)
    return body


def _replay_field(compat: Compat) -> str | None:
    return _REPLAY_FIELD.get(compat.thinking_format or "openai")


def _assistant(msg: Message, replay: str | None, source: str) -> Iterator[dict[str, Any]]:
    text = "".join(b.text for b in msg.content if isinstance(b, Text))
    calls = [b for b in msg.content if isinstance(b, ToolCall)]
    if not text and not calls:
        return  # thinking alone: an assistant message with neither content nor calls is refused
    out: dict[str, Any] = {"role": "assistant", "content": text or None}
    if replay is not None:
        # Unsigned text: replayable where it was issued, or when nobody claims it (a client's own copy).
        thought = "".join(
            b.text for b in msg.content if isinstance(b, Thinking) and b.source in (None, source) and not b.redacted
        )
        if thought:
            out[replay] = thought
    if calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
            for c in calls
        ]
    yield out


def _input(msg: Message) -> Iterator[dict[str, Any]]:
    """User text and images as user messages, tool results as tool messages, in order."""
    parts: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []  # from tool results, sent after them
    for block in msg.content:
        if isinstance(block, ToolResult):
            if parts:
                yield _user(parts)
                parts = []
            yield {"role": "tool", "tool_call_id": block.tool_call_id, "content": _result_text(block)}
            images.extend(_image(b) for b in block.content if isinstance(b, Image))
        elif isinstance(block, Text | Image):
            if images:
                yield _user([{"type": "text", "text": "Images from the tool results:"}, *images])
                images = []
            parts.append(_part(block))
    if images:
        yield _user([{"type": "text", "text": "Images from the tool results:"}, *images])
    if parts:
        yield _user(parts)


def _user(parts: list[dict[str, Any]]) -> dict[str, Any]:
    # A lone text as a plain string: the form every compatible server accepts.
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"role": "user", "content": parts[0]["text"]}
    return {"role": "user", "content": parts}


def _result_text(result: ToolResult) -> str:
    text = "\n".join(c.text for c in result.content if isinstance(c, Text))
    # The chat API has no error flag on a tool message: say it in the text so the model knows.
    return f"Error: {text}" if result.is_error else text


def _part(block: Text | Image) -> dict[str, Any]:
    return {"type": "text", "text": block.text} if isinstance(block, Text) else _image(block)


def _image(block: Image) -> dict[str, Any]:
    url = f"data:{block.media_type or 'image/png'};base64,{block.data}" if block.data else block.url or ""
    image: dict[str, Any] = {"url": url}
    if block.detail:
        image["detail"] = block.detail
    return {"type": "image_url", "image_url": image}


def _tool(tool: Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool.name}
    if tool.description:
        fn["description"] = tool.description
    fn["parameters"] = tool.parameters
    if tool.strict is not None:
        fn["strict"] = tool.strict  # dropped by adapt_request where the provider has no strict mode
    return {"type": "function", "function": fn}


# --- answers ----------------------------------------------------------------------------------


def decode_response(body: bytes, target: WireTarget) -> Response:
    """A ``chat.completion`` as a canonical :class:`Response`; raises ``msgspec.DecodeError`` for non-JSON."""
    data = msgspec.json.decode(body)
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        if isinstance(data, dict) and data.get("error") is not None:
            raise UpstreamError(f"{target.provider_name}: {_error_message(data['error'])}", status=502)
        raise UpstreamError(f"{target.provider_name}: the answer is not a chat completion", status=502)
    resp = Response(id=str(data.get("id") or ""), model=str(data.get("model") or target.model_id))
    choice = as_dict(data["choices"][0] if data["choices"] else None)
    message = as_dict(choice.get("message"))
    thought = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(thought, str) and thought:
        resp.content.append(Thinking(thought, source=issuer(SOURCE, target)))
    if isinstance(text := message.get("content"), str) and text:
        resp.content.append(Text(text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        resp.content.append(Text(refusal))
    for i, call in enumerate(message.get("tool_calls") or ()):
        if not isinstance(call, dict):
            continue
        fn = as_dict(call.get("function"))
        args = arguments_text(fn.get("arguments")) or "{}"
        resp.content.append(ToolCall(str(call.get("id") or f"call_{i}"), str(fn.get("name") or ""), args))
    has_calls = any(isinstance(b, ToolCall) for b in resp.content)
    resp.finish_reason = finish_reason(choice.get("finish_reason"), has_calls, bool(refusal))
    resp.usage = usage_from(data.get("usage"))
    return resp


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)
