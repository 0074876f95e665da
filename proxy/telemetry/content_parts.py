"""The GenAI semantic conventions' message parts, and the output messages of each surface's answer.

Used by :mod:`proxy.telemetry.content` (only with ``tracing.capture_content``): the parts of the content
each API sends (OpenAI Responses items, Anthropic blocks) and :class:`Draft`, one output message built
from a JSON answer (here) or, delta by delta, from the SSE events of a stream (:mod:`.content`). Every
reader checks each value's type: malformed content is skipped, never raised on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = [
    "Draft",
    "Json",
    "Part",
    "answer_drafts",
    "anthropic_parts",
    "chat_delta",
    "chat_parts",
    "choice_index",
    "flat_text",
    "items",
    "media",
    "responses_answer",
    "responses_parts",
    "text",
    "tool_call",
]

Json = Any
Part = dict[str, Any]

#: Finish reasons as the conventions name them (``stop``, ``length``, ``content_filter``, ``tool_call``,
#: ``error``); another is kept as the provider said it.
_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "completed": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_calls": "tool_call",
    "function_call": "tool_call",
    "tool_use": "tool_call",
    "content_filter": "content_filter",
    "refusal": "content_filter",
    "failed": "error",
    "error": "error",
}


def items(value: Json) -> list[Json]:
    """A list the content says it has, or none when it has something else there."""
    return value if isinstance(value, list) else []


def text(content: str) -> Part:
    return {"type": "text", "content": content}


def media(url: Json, modality: str) -> Part | None:
    """An image or file URL: a ``data:`` URL as a blob (its base64 bytes), another as a uri part."""
    if not isinstance(url, str):
        return None
    if url.startswith("data:") and "," in url:
        head, _, data = url[5:].partition(",")
        return {"type": "blob", "modality": modality, "mime_type": head.split(";")[0] or None, "content": data}
    return {"type": "uri", "modality": modality, "uri": url}


def flat_text(content: Json) -> Json:
    """A tool result: its text when it is text (or a list of text parts), else the value as sent."""
    if isinstance(content, list):
        texts: list[str] = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        if len(texts) == len(content):
            return "".join(texts)
    return content


def tool_call(call_id: Json, name: Json, arguments: Json) -> Part:
    if isinstance(arguments, str):
        with contextlib.suppress(msgspec.DecodeError, ValueError):  # else kept as the text it is
            arguments = msgspec.json.decode(arguments) if arguments else None
    return {"type": "tool_call", "id": call_id, "name": name if isinstance(name, str) else "", "arguments": arguments}


def parts_of(content: Json, part: Callable[[dict[str, Any]], Part | None]) -> list[Part]:
    """A message's content as parts, whatever the API: a string is one text part; each object of a list
    goes through the API's ``part`` (None: nothing to record, such as an image without a URL)."""
    if isinstance(content, str):
        return [text(content)]
    parts: list[Part] = []
    for p in items(content):
        if isinstance(p, dict) and (q := part(p)) is not None:
            parts.append(q)
    return parts


def _other(kind: Json) -> Part | None:
    """A part of a type not read here: recorded by its type alone."""
    return {"type": kind} if isinstance(kind, str) else None


def chat_parts(content: Json) -> list[Part]:
    return parts_of(content, _chat_part)


def _chat_part(p: dict[str, Any]) -> Part | None:
    kind = p.get("type")
    if kind == "text" and isinstance(p.get("text"), str):
        return text(p["text"])
    if kind == "image_url" and isinstance(p.get("image_url"), dict):
        return media(p["image_url"].get("url"), "image")
    if kind == "input_audio" and isinstance(p.get("input_audio"), dict):
        audio = p["input_audio"]
        fmt = audio.get("format")
        mime = f"audio/{fmt}" if isinstance(fmt, str) else None
        return {"type": "blob", "modality": "audio", "mime_type": mime, "content": audio.get("data")}
    if kind == "file" and isinstance(p.get("file"), dict):
        f = p["file"]
        if isinstance(f.get("file_id"), str):
            return {"type": "file", "modality": "document", "file_id": f["file_id"]}
        return media(f.get("file_data"), "document")
    return _other(kind)


def responses_parts(content: Json) -> list[Part]:
    return parts_of(content, _responses_part)


def _responses_part(p: dict[str, Any]) -> Part | None:
    kind = p.get("type")
    if kind in ("input_text", "output_text", "text") and isinstance(p.get("text"), str):
        return text(p["text"])
    if kind == "refusal" and isinstance(p.get("refusal"), str):
        return text(p["refusal"])
    if kind in ("input_image", "input_file"):
        modality = "image" if kind == "input_image" else "document"
        if isinstance(p.get("file_id"), str):
            return {"type": "file", "modality": modality, "file_id": p["file_id"]}
        return media(p.get("image_url") or p.get("file_url") or p.get("file_data"), modality)
    return _other(kind)


def anthropic_parts(content: Json) -> list[Part]:
    """Anthropic content (a string or blocks): also the ``system`` prompt's shape."""
    return parts_of(content, _anthropic_part) if content != "" else []


def _anthropic_part(block: dict[str, Any]) -> Part | None:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return text(block["text"])
    if kind == "thinking" and isinstance(block.get("thinking"), str):
        return {"type": "reasoning", "content": block["thinking"]}
    if kind in ("tool_use", "server_tool_use"):
        return tool_call(block.get("id"), block.get("name"), block.get("input"))
    if kind == "tool_result":
        response = flat_text(block.get("content"))
        return {"type": "tool_call_response", "id": block.get("tool_use_id"), "response": response}
    if kind in ("image", "document") and isinstance(block.get("source"), dict):
        return _anthropic_source(block["source"], "image" if kind == "image" else "document")
    return _other(kind)


def _anthropic_source(source: dict[str, Any], modality: str) -> Part | None:
    kind = source.get("type")
    if kind == "base64":
        return {
            "type": "blob",
            "modality": modality,
            "mime_type": source.get("media_type"),
            "content": source.get("data"),
        }
    if kind == "url":
        return media(source.get("url"), modality)
    if kind == "file" and isinstance(source.get("file_id"), str):
        return {"type": "file", "modality": modality, "file_id": source["file_id"]}
    if kind == "text" and isinstance(source.get("data"), str):
        return text(source["data"])
    return None


class _Pieces(list[str]):
    """A part's text arriving delta by delta (joined once, when the message is made: no quadratic +=)."""


class Draft:
    """One output message (a choice), built from whole parts or from a stream's deltas, in arrival order."""

    __slots__ = ("finish", "parts")

    def __init__(self) -> None:
        self.parts: dict[object, Part] = {}
        #: The finish reason the answer gave (the conventions' name), None: it said none.
        self.finish: str | None = None

    def put(self, key: object, part: Part | None) -> None:
        if part is not None:
            self.parts[key] = part

    def piece(self, key: object, kind: str, value: Json, field: str = "content") -> None:
        """Append a delta's text to the part ``key`` (made as a ``kind`` part on its first delta)."""
        if not isinstance(value, str) or not value:
            return
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = {"type": kind}
        pieces = part.get(field)
        if not isinstance(pieces, _Pieces):
            pieces = part[field] = _Pieces()
        pieces.append(value)

    def start(self, key: object, kind: str, value: Json) -> None:
        """A text or reasoning part made now, even empty, so that the parts keep the stream's order."""
        self.parts[key] = {"type": kind, "content": _Pieces([value] if isinstance(value, str) else [])}

    def tool(self, key: object, call_id: Json, name: Json) -> None:
        """The tool call ``key`` (its id and name when this event gives them); arguments come as pieces."""
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = {"type": "tool_call", "id": None, "name": "", "arguments": _Pieces()}
        if isinstance(call_id, str) and call_id:
            part["id"] = call_id
        if isinstance(name, str) and name:
            part["name"] = name

    def end(self, reason: Json) -> None:
        if isinstance(reason, str) and reason:
            self.finish = _FINISH.get(reason, reason)

    def message(self, fallback: str) -> dict[str, Any]:
        """The ``gen_ai.output.messages`` item; ``fallback`` when the answer gave no finish reason."""
        parts = []
        for part in self.parts.values():
            done = dict(part)
            if isinstance(done.get("content"), _Pieces):
                done["content"] = "".join(done["content"])
            if isinstance(done.get("arguments"), _Pieces):
                done = tool_call(done.get("id"), done.get("name"), "".join(done["arguments"]))
            parts.append(done)
        return {"role": "assistant", "parts": parts, "finish_reason": self.finish or fallback}


# --- whole (non-streamed) answers --------------------------------------------------------------------


def answer_drafts(surface: str, body: Json) -> list[Draft]:
    """The output messages of a JSON answer (none for embeddings and token counts)."""
    if not isinstance(body, dict):
        return []
    if surface == "/v1/messages":
        draft = Draft()
        for i, part in enumerate(anthropic_parts(body.get("content"))):
            draft.put(i, part)
        draft.end(body.get("stop_reason"))
        return [draft]
    if surface == "/v1/responses":
        return [responses_answer(body)]
    if surface not in ("/v1/chat/completions", "/v1/completions"):
        return []
    choices = [c for c in items(body.get("choices")) if isinstance(c, dict)]
    return [_choice(c) for c in sorted(choices, key=choice_index)]


def choice_index(choice: dict[str, Any]) -> int:
    i = choice.get("index")
    return i if isinstance(i, int) else 0


def _choice(choice: dict[str, Any]) -> Draft:
    draft = Draft()
    message = choice.get("message")
    if isinstance(message, dict):
        chat_delta(draft, message)
        calls = message.get("tool_calls")
        for i, call in enumerate(calls if isinstance(calls, list) else ()):
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                draft.put(("tool", i), tool_call(call.get("id"), fn.get("name"), fn.get("arguments")))
    else:
        draft.piece("text", "text", choice.get("text"))  # legacy completions
    draft.end(choice.get("finish_reason"))
    return draft


def chat_delta(draft: Draft, delta: dict[str, Any]) -> None:
    """A chat message's (or a stream delta's) reasoning, text and refusal."""
    draft.piece("reasoning", "reasoning", delta.get("reasoning_content") or delta.get("reasoning"))
    draft.piece("text", "text", delta.get("content"))
    draft.piece("refusal", "text", delta.get("refusal"))


def responses_answer(response: Json) -> Draft:
    draft = Draft()
    if not isinstance(response, dict):
        return draft
    calls = False
    output = response.get("output")
    for i, item in enumerate(output if isinstance(output, list) else ()):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for j, part in enumerate(responses_parts(item.get("content"))):
                draft.put((i, j), part)
        elif kind == "function_call":
            calls = True
            draft.put(i, tool_call(item.get("call_id"), item.get("name"), item.get("arguments")))
        elif kind == "reasoning":
            summary = item.get("summary")
            texts = [s.get("text") for s in summary if isinstance(s, dict)] if isinstance(summary, list) else []
            draft.put(i, {"type": "reasoning", "content": "".join(t for t in texts if isinstance(t, str))})
        elif isinstance(kind, str):
            draft.put(i, {"type": kind})
    status = response.get("status")
    details = response.get("incomplete_details")
    if status == "incomplete" and isinstance(details, dict):
        draft.end(details.get("reason"))
    elif status == "completed":
        draft.end("tool_calls" if calls else "stop")
    elif isinstance(status, str) and status != "in_progress":
        draft.end(status)
    return draft
