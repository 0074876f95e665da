"""Message contents for a request span, when the operator opts in (``tracing.capture_content``).

The OpenTelemetry GenAI semantic conventions' opt-in attributes, each a JSON string:

* ``gen_ai.input.messages``: the chat history, ``[{"role": "user", "parts": [{"type": "text", "content":
  "..."}]}]`` (a chat ``system``/``developer`` message stays here, as the conventions ask for instructions
  that are part of the history);
* ``gen_ai.system_instructions``: instructions given apart from the history (Anthropic's ``system``, the
  Responses API's ``instructions``), a list of parts;
* ``gen_ai.output.messages``: one message per choice, ``{"role": "assistant", "parts": [...],
  "finish_reason": "stop"}``;

and ``gen_ai.response.finish_reasons`` (the conventions' values: ``stop``, ``length``, ``tool_call``,
``content_filter``, ``error``; any other as the provider said it). It is set only here, with contents on:
reading it needs the answer parsed, which the pipeline does not do otherwise.

Parts: ``text``, ``reasoning``, ``tool_call`` (``id``, ``name``, ``arguments``: the JSON value when the
arguments parse, else their text), ``tool_call_response`` (``id``, ``response``), and media as ``uri``,
``blob`` (a ``data:`` URL or base64 source: its bytes, base64) or ``file`` (a provider file id).

Read from :class:`proxy.outcome.Capture`, in the surface's own format whatever the upstream spoke (the
bytes the client sent and got): each surface's request body, its JSON answer, or its SSE stream. Nothing
else of the request (headers, keys, other parameters) is read. Malformed or cut content never raises: what
cannot be read is left out, and ``switchboard.content.truncated`` names ``input`` / ``output`` when the
capture's size limit cut them (a cut stream still gives the text up to the cut).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from providers.sse import SSEParser

from .content_parts import (
    Draft,
    Json,
    Part,
    answer_drafts,
    anthropic_parts,
    chat_delta,
    chat_parts,
    choice_index,
    flat_text,
    items,
    responses_answer,
    responses_parts,
    text,
    tool_call,
)

if TYPE_CHECKING:
    from ..outcome import Capture

__all__ = ["content_attributes"]

log = logging.getLogger("switchboard")

Message = dict[str, Any]
Attributes = dict[str, str | list[str]]


def content_attributes(surface: str, stream: bool, capture: Capture) -> Attributes:
    """The span attributes of the captured request and answer (see the module docstring); never raises."""
    attrs: Attributes = {}
    truncated = []
    if capture.request_truncated:
        truncated.append("input")
    if capture.answer_truncated:
        truncated.append("output")
    if truncated:
        attrs["switchboard.content.truncated"] = truncated
    try:
        _input(attrs, surface, capture)
    except Exception:  # a reader's oversight must not cost the span: the content is left out
        log.debug("could not read the request's contents for the span", exc_info=True)
    try:
        _output(attrs, surface, stream, capture)
    except Exception:
        log.debug("could not read the answer's contents for the span", exc_info=True)
    return attrs


def _input(attrs: Attributes, surface: str, capture: Capture) -> None:
    body = _json(capture.request) if capture.request is not None else None
    if isinstance(body, dict):
        messages, system = _request(surface, body)
        attrs["gen_ai.input.messages"] = _dump(messages)
        if system:
            attrs["gen_ai.system_instructions"] = _dump(system)


def _output(attrs: Attributes, surface: str, stream: bool, capture: Capture) -> None:
    if not capture.answer:
        return
    answer = bytes(capture.answer)
    drafts = _stream_drafts(surface, answer) if stream else answer_drafts(surface, _json(answer))
    if drafts:
        # No finish reason: the stream broke off (an error), or the capture's limit cut it (not known).
        fallback = "unknown" if capture.answer_truncated else "error"
        attrs["gen_ai.output.messages"] = _dump([d.message(fallback) for d in drafts])
        reasons = [d.finish for d in drafts if d.finish is not None]
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons


def _json(data: bytes | bytearray | None) -> Json:
    if not data:
        return None
    try:
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, ValueError):
        return None


def _dump(value: Json) -> str:
    return msgspec.json.encode(value).decode()


# --- requests ----------------------------------------------------------------------------------------


def _request(surface: str, body: dict[str, Any]) -> tuple[list[Message], list[Part]]:
    """The input messages and the separate system instructions of one surface's request body."""
    if surface.startswith("/v1/messages"):
        return _anthropic_messages(body.get("messages")), anthropic_parts(body.get("system"))
    if surface == "/v1/responses":
        instructions = body.get("instructions")
        system = [text(instructions)] if isinstance(instructions, str) and instructions else []
        return _responses_input(body.get("input")), system
    if surface == "/v1/completions":
        return [_user([text(p)]) for p in _strings(body.get("prompt"))], []
    if surface == "/v1/embeddings":
        texts = _strings(body.get("input"))
        return ([_user([text(t) for t in texts])] if texts else []), []
    return _chat_messages(body.get("messages")), []


def _strings(value: Json) -> list[str]:
    """A prompt or an embedding input: a string or a list of strings (token arrays are not text)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _user(parts: list[Part]) -> Message:
    return {"role": "user", "parts": parts}


def _chat_messages(messages: Json) -> list[Message]:
    out: list[Message] = []
    for m in messages if isinstance(messages, list) else ():
        if not isinstance(m, dict):
            continue
        role = m.get("role") if isinstance(m.get("role"), str) else "user"
        content = m.get("content")
        if role in ("tool", "function"):
            call_id = m.get("tool_call_id")
            parts: list[Part] = [{"type": "tool_call_response", "id": call_id, "response": flat_text(content)}]
        else:
            parts = chat_parts(content)
            for key in ("reasoning_content", "reasoning"):
                if isinstance(m.get(key), str) and m[key]:
                    parts.insert(0, {"type": "reasoning", "content": m[key]})
            calls = m.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    parts.append(tool_call(call.get("id"), fn.get("name"), fn.get("arguments")))
        message: Message = {"role": role, "parts": parts}
        if isinstance(m.get("name"), str):
            message["name"] = m["name"]
        out.append(message)
    return out


def _responses_input(items: Json) -> list[Message]:
    if isinstance(items, str):
        return [_user([text(items)])]
    out: list[Message] = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if isinstance(item.get("role"), str) and kind in (None, "message"):
            out.append({"role": item["role"], "parts": responses_parts(item.get("content"))})
        elif kind == "function_call":
            call = tool_call(item.get("call_id"), item.get("name"), item.get("arguments"))
            out.append({"role": "assistant", "parts": [call]})
        elif kind == "function_call_output":
            response = {"type": "tool_call_response", "id": item.get("call_id"), "response": item.get("output")}
            out.append({"role": "tool", "parts": [response]})
        elif kind == "reasoning":
            summary = item.get("summary")
            texts = (
                [s["text"] for s in summary if isinstance(s, dict) and isinstance(s.get("text"), str)]
                if (isinstance(summary, list))
                else []
            )
            out.append({"role": "assistant", "parts": [{"type": "reasoning", "content": "".join(texts)}]})
    return out


def _anthropic_messages(messages: Json) -> list[Message]:
    out: list[Message] = []
    for m in messages if isinstance(messages, list) else ():
        if isinstance(m, dict):
            role = m.get("role") if isinstance(m.get("role"), str) else "user"
            out.append({"role": role, "parts": anthropic_parts(m.get("content"))})
    return out


# --- streamed answers --------------------------------------------------------------------------------


def _stream_drafts(surface: str, data: bytes) -> list[Draft]:
    """The output messages of the SSE events the client got (a cut last event is left out)."""
    drafts: dict[int, Draft] = {}
    for _, raw in SSEParser().feed_raw(data):
        if raw == b"[DONE]":
            continue
        try:
            event = msgspec.json.decode(raw)
        except (msgspec.DecodeError, ValueError):
            continue
        if not isinstance(event, dict):
            continue
        if surface == "/v1/messages":
            _anthropic_event(drafts.setdefault(0, Draft()), event)
        elif surface == "/v1/responses":
            _responses_event(drafts, event)
        else:
            _chat_chunk(drafts, event)
    return [drafts[i] for i in sorted(drafts)]


def _chat_chunk(drafts: dict[int, Draft], chunk: dict[str, Any]) -> None:
    """An OpenAI chat (or legacy completions) chunk; ``{"error": ...}``: the stream failed."""
    if "error" in chunk and not items(chunk.get("choices")):
        drafts.setdefault(0, Draft()).finish = "error"
        return
    for choice in items(chunk.get("choices")):
        if not isinstance(choice, dict):
            continue
        draft = drafts.setdefault(choice_index(choice), Draft())
        delta = choice.get("delta")
        if isinstance(delta, dict):
            chat_delta(draft, delta)
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if not isinstance(call, dict):
                    continue
                key = ("tool", call.get("index") if isinstance(call.get("index"), int) else 0)
                fn = call["function"] if isinstance(call.get("function"), dict) else {}
                draft.tool(key, call.get("id"), fn.get("name"))
                draft.piece(key, "tool_call", fn.get("arguments"), "arguments")
        else:
            draft.piece("text", "text", choice.get("text"))
        draft.end(choice.get("finish_reason"))


def _position(value: Json) -> int:
    """An event's ``index`` / ``output_index``: a part's key, so never an unhashable value."""
    return value if isinstance(value, int) else -1


def _anthropic_event(draft: Draft, event: dict[str, Any]) -> None:
    kind = event.get("type")
    i = _position(event.get("index"))
    if kind == "content_block_start" and isinstance(event.get("content_block"), dict):
        block = event["content_block"]
        btype = block.get("type")
        if btype in ("tool_use", "server_tool_use"):
            draft.tool(i, block.get("id"), block.get("name"))
        elif btype in ("text", "thinking"):
            draft.start(i, "text" if btype == "text" else "reasoning", block.get(btype))
        else:
            for part in anthropic_parts([block]):
                draft.put(i, part)
    elif kind == "content_block_delta" and isinstance(event.get("delta"), dict):
        delta = event["delta"]
        dtype = delta.get("type")
        if dtype == "text_delta":
            draft.piece(i, "text", delta.get("text"))
        elif dtype == "thinking_delta":
            draft.piece(i, "reasoning", delta.get("thinking"))
        elif dtype == "input_json_delta":
            draft.tool(i, None, None)
            draft.piece(i, "tool_call", delta.get("partial_json"), "arguments")
    elif kind == "message_delta" and isinstance(event.get("delta"), dict):
        draft.end(event["delta"].get("stop_reason"))
    elif kind == "error":
        draft.finish = "error"


def _responses_event(drafts: dict[int, Draft], event: dict[str, Any]) -> None:
    kind = event.get("type")
    draft = drafts.setdefault(0, Draft())
    i = _position(event.get("output_index"))
    if kind in ("response.completed", "response.incomplete", "response.failed"):
        whole = responses_answer(event.get("response"))
        if whole.parts:  # the full answer: it wins over the deltas
            drafts[0] = whole
        else:
            draft.finish = whole.finish
    elif kind == "response.output_item.added" and isinstance(event.get("item"), dict):
        item = event["item"]
        if item.get("type") == "function_call":
            draft.tool(i, item.get("call_id"), item.get("name"))
    elif kind in ("response.output_text.delta", "response.refusal.delta"):
        draft.piece((i, _position(event.get("content_index"))), "text", event.get("delta"))
    elif kind == "response.function_call_arguments.delta":
        draft.tool(i, None, None)
        draft.piece(i, "tool_call", event.get("delta"), "arguments")
    elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
        draft.piece((i, "reasoning"), "reasoning", event.get("delta"))
    elif kind == "error":
        draft.finish = "error"
