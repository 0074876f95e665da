"""The ``acme-ndjson`` wire API: Acme's own request and answer formats.

Request: ``POST {baseUrl}/generate`` with::

    {"model": "acme-1", "prompt_turns": [{"speaker": "system" | "user" | "assistant", "text": "..."}],
     "limit": 256, "temperature": 0.2, "stop_words": ["..."], "stream": false}

Answer, not streamed: ``{"id": "gen-1", "text": "...", "stop_reason": "end" | "limit",
"usage": {"prompt": 12, "completion": 5}}``. Streamed (``application/x-ndjson``): one JSON object per
line, ``{"delta": "..."}`` for each piece of text, then ``{"done": true, "stop_reason": "end", "usage":
{...}}``; an error met mid-stream is a line ``{"error": {"message": "..."}}``. An error status carries
``{"error": {"message": "...", "kind": "..."}}``.

Acme takes text only: images, tools and tool results are refused with a 400 naming the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from providers.canonical import (
    Event,
    Finish,
    FinishReason,
    Image,
    Request,
    Response,
    StreamError,
    Text,
    TextDelta,
    Usage,
    UsageEvent,
)
from providers.errors import InvalidRequest, SwitchboardError, UpstreamError, UpstreamUnreachable
from providers.wire.base import UpstreamCall, WireTarget

__all__ = ["API", "API_NAME", "AcmeWire"]

API_NAME = "acme-ndjson"
_FINISH: dict[str, FinishReason] = {"end": "stop", "limit": "length", "filtered": "content_filter"}
_RETRY_HEADERS = ("retry-after",)


class AcmeWire:
    """The :class:`~providers.wire.base.WireAPI` of Acme."""

    name = API_NAME

    def build(self, req: Request, target: WireTarget) -> UpstreamCall:
        body: dict[str, Any] = {"model": target.model_id, "prompt_turns": _turns(req, target), "stream": req.stream}
        if req.max_tokens is not None:
            body["limit"] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.stop:
            body["stop_words"] = list(req.stop)
        return UpstreamCall(
            target.base_url.rstrip("/") + "/generate",
            msgspec.json.encode(body),
            {"accept": "application/x-ndjson" if req.stream else "application/json"},
        )

    def decode_response(self, body: bytes, target: WireTarget) -> Response:
        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise UpstreamUnreachable(f"{target.provider_name} answered something other than JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise UpstreamUnreachable(f"{target.provider_name} answered without 'text'")
        return Response(
            id=str(data.get("id") or "acme"),
            model=target.model_id,
            content=[Text(data["text"])] if data["text"] else [],
            finish_reason=_finish(data.get("stop_reason")),
            usage=_usage(data.get("usage")),
        )

    def stream_decoder(self, target: WireTarget) -> AcmeStreamDecoder:
        return AcmeStreamDecoder(target.provider_name)

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        message = _error_message(body) or f"HTTP {status}"
        if status in (401, 403):
            message += " (run 'switchboard login acme' again)"
        kept = {h: v for h in _RETRY_HEADERS if (v := headers.get(h))}
        return UpstreamError(f"{target.provider_name}: {message}", status=status, headers=kept)


class AcmeStreamDecoder:
    """NDJSON lines → canonical events; bytes may be split anywhere."""

    def __init__(self, provider_name: str) -> None:
        self._provider = provider_name
        self._buffer = b""
        self._done = False

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        out: list[Event] = []
        for line in lines:
            self._line(line, out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        rest, self._buffer = self._buffer, b""
        if rest.strip() and not self._done:
            try:
                msgspec.json.decode(rest)
            except msgspec.DecodeError:
                rest = b""  # half a line: the connection was cut, said below
            self._line(rest, out)  # a last line without its newline still counts
        if not self._done:
            self._done = True
            out.append(StreamError(UpstreamUnreachable(f"{self._provider}: stream ended early (no done line)")))
        return out

    def _line(self, line: bytes, out: list[Event]) -> None:
        if not line.strip() or self._done:
            return
        try:
            data = msgspec.json.decode(line)
        except msgspec.DecodeError:
            self._done = True
            out.append(StreamError(UpstreamUnreachable(f"{self._provider}: a stream line is not JSON")))
            return
        if not isinstance(data, dict):
            return
        if isinstance(data.get("delta"), str) and data["delta"]:
            out.append(TextDelta(data["delta"]))
        if data.get("error") is not None:
            self._done = True
            message = _message(data["error"])
            out.append(StreamError(UpstreamError(f"{self._provider}: {message}", status=502)))
        elif data.get("done") is True:
            self._done = True
            usage = _usage(data.get("usage"))
            if usage is not None:
                out.append(UsageEvent(usage))
            out.append(Finish(_finish(data.get("stop_reason"))))


def _turns(req: Request, target: WireTarget) -> list[dict[str, str]]:
    turns = [{"speaker": "system", "text": t.text} for t in req.system]
    for n, msg in enumerate(req.messages):
        if msg.role == "tool":
            raise InvalidRequest(
                f"{target.provider_name} has no tools; drop the tool message messages[{n}]", param="messages"
            )
        texts: list[str] = []
        for block in msg.content:
            if isinstance(block, Text):
                texts.append(block.text)
            elif isinstance(block, Image):
                raise InvalidRequest(
                    f"{target.provider_name} takes text only; remove the image from messages[{n}]", param="messages"
                )
            elif msg.role == "user":
                raise InvalidRequest(f"{target.provider_name} takes text only in messages[{n}]", param="messages")
            # An assistant turn's thinking or tool calls from another model carry nothing Acme can use.
        turns.append({"speaker": msg.role, "text": "".join(texts)})
    if req.tools:
        raise InvalidRequest(f"{target.provider_name} has no tools; remove 'tools' from the request", param="tools")
    return turns


def _finish(reason: Any) -> FinishReason:
    return _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt"), raw.get("completion")
    return Usage(
        input_tokens=prompt if isinstance(prompt, int) else 0,
        output_tokens=completion if isinstance(completion, int) else 0,
    )


def _error_message(body: bytes) -> str:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace").strip()[:200]
    return _message(data.get("error") if isinstance(data, dict) else data)


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("kind") or error)[:200]
    return str(error)[:200]


API = AcmeWire()
