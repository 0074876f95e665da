"""``/v1/messages/count_tokens`` where the upstream does not speak Anthropic's API.

* Gemini (``google-generative-ai``, ``google-vertex``): :class:`GeminiCountLeg` sends the translated
  request to ``countTokens`` and answers ``{"input_tokens": totalTokens}``.
* Anthropic-speaking upstreams that serve it (:attr:`providers.betas.BetaPolicy.count_tokens`) get the
  body through the passthrough (:mod:`.messages_pass`).
* Everything else: :func:`estimate_tokens`, no upstream call. No tokenizer for Claude (or most models)
  installs from PyPI without fetching its vocabulary at run time, so this is a documented heuristic:
  one token per 3.5 characters of text, tool inputs and tool definitions (JSON as written), 4 tokens
  per message, 1,600 per image (Anthropic's cost of a ~1.15-megapixel image), 1,500 per started 50 kB
  of PDF. It leans high: Claude Code compacts on this number, and early beats overflowing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import msgspec

from providers.betas import policy_for
from providers.canonical import Request
from providers.credentials import ResolvedAuth
from providers.errors import NotImplementedYet, SwitchboardError, UpstreamUnreachable
from providers.request_facts import RequestFacts, facts_from_request
from providers.wire.base import UpstreamCall, WireAPI, WireTarget

from ..router import Target
from ..upstream_call import wire_target
from .messages_types import (
    Base64Source,
    ContentSource,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    PlainTextSource,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)

__all__ = ["GeminiCountLeg", "counted_upstream", "estimate_tokens"]

_GEMINI = ("google-generative-ai", "google-vertex")
_JSON = [(b"content-type", b"application/json")]
_IMAGE_TOKENS = 1600
_PDF_TOKENS_PER_50KB = 1500
_MESSAGE_TOKENS = 4


def counted_upstream(target: Target) -> bool:
    """Whether ``target`` counts tokens itself (else :func:`estimate_tokens`)."""
    if target.api in _GEMINI:
        return True
    return target.api == "anthropic-messages" and policy_for(target.provider.id).count_tokens


def estimate_tokens(req: MessagesRequest) -> int:
    chars = 0
    extra = 0
    if isinstance(req.system, str):
        chars += len(req.system)
    elif req.system:
        chars += sum(len(b.text) for b in req.system)
    for tool in req.tools or ():
        chars += len(tool.name) + len(tool.description or "") + len(msgspec.json.encode(tool.input_schema or {}))
    for msg in req.messages:
        extra += _MESSAGE_TOKENS
        if isinstance(msg.content, str):
            chars += len(msg.content)
            continue
        for block in msg.content:
            c, e = _block_size(block)
            chars += c
            extra += e
    return math.ceil(chars * 2 / 7) + extra


def _block_size(block: object) -> tuple[int, int]:
    """(characters, fixed tokens) of one content block."""
    if isinstance(block, TextBlock):
        return len(block.text), 0
    if isinstance(block, ThinkingBlock):
        return len(block.thinking), 0
    if isinstance(block, ToolUseBlock):
        return len(block.name) + len(msgspec.json.encode(block.input)), 0
    if isinstance(block, ImageBlock):
        return 0, _IMAGE_TOKENS
    if isinstance(block, DocumentBlock):
        source = block.source
        if isinstance(source, PlainTextSource):
            return len(source.data), 0
        if isinstance(source, ContentSource):
            return len(msgspec.json.encode(source.content)), 0
        if isinstance(source, Base64Source):
            return 0, math.ceil(len(source.data) * 3 / 4 / 50_000) * _PDF_TOKENS_PER_50KB
        return 0, _PDF_TOKENS_PER_50KB
    if isinstance(block, ToolResultBlock):
        if isinstance(block.content, str):
            return len(block.content), 0
        chars = extra = 0
        for part in block.content or ():
            c, e = _block_size(part)
            chars, extra = chars + c, extra + e
        return chars, extra
    return 0, 0


class _Counted(msgspec.Struct):
    totalTokens: int = 0


class GeminiCountLeg:
    """count_tokens to Gemini's ``countTokens`` (a :class:`proxy.pipeline.Leg`, never streamed)."""

    __slots__ = ("_creq", "_target", "_wire", "_wt", "estimated", "facts", "stream")

    def __init__(self, wire: WireAPI, target: Target, creq: Request) -> None:
        if wire.name not in _GEMINI:  # a fallback Target of another API: its count is not ours to forward
            raise NotImplementedYet(f"count_tokens is not forwarded to {wire.name} upstreams; it is estimated")
        self._wire = wire
        self._target = target
        self._creq = creq
        self._wt: WireTarget | None = None
        self.stream = False
        self.estimated = False
        self.facts: RequestFacts | None = facts_from_request(creq) if target.provider.adapter else None

    def call(self, auth: ResolvedAuth) -> UpstreamCall:
        wt = self._wt = wire_target(self._target, auth)
        built = self._wire.build(self._creq, wt)
        body = msgspec.json.decode(built.body)
        head, _, _ = built.url.rpartition(":")
        if self._wire.name == "google-vertex":
            payload = {k: body[k] for k in ("contents", "systemInstruction", "tools") if k in body}
        else:
            model = "models/" + head.rsplit("/models/", 1)[-1]
            payload = {"generateContentRequest": {"model": model, **body}}
        return UpstreamCall(head + ":countTokens", msgspec.json.encode(payload), built.headers)

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        assert self._wt is not None, "call() precedes every answer"
        return self._wire.error(self._wt, status, body, headers)

    def answer(
        self, status: int, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            counted = msgspec.json.decode(body, type=_Counted)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            name = self._target.provider.name
            raise UpstreamUnreachable(f"{name} answered countTokens with an unreadable body ({exc}); retry") from exc
        return 200, msgspec.json.encode({"input_tokens": counted.totalTokens}), _JSON

    def stream_steps(self) -> tuple[Callable[[bytes], bytes], Callable[[], bytes], Callable[[Exception], bytes]]:
        raise AssertionError("count_tokens is never streamed")

    def usage(self) -> None:
        return None
