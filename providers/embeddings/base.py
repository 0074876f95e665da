"""The embedding request and answer every translating embedding module speaks, and their contract.

:class:`EmbedRequest` is what ``POST /v1/embeddings`` asks for once the client's body was validated (texts
only: token arrays reach OpenAI-compatible upstreams through the passthrough, never a translation).
An :class:`EmbeddingAPI` module turns one slice of its texts into one upstream call and that call's
answer into :class:`EmbedBatch`; the caller splits the texts (:meth:`EmbeddingAPI.limit` per call),
sends the calls and joins the batches in order (:func:`encode_openai`).

Who calls what, in order (the embeddings surface, :mod:`proxy.embeddings`):

1. :meth:`EmbeddingAPI.check` — once, before any call: :class:`InvalidRequest` (400) naming the
   parameter the upstream cannot honour (``dimensions`` for Cohere Embed v3).
2. :meth:`EmbeddingAPI.limit` — how many texts one call may carry for this model (its upstream id).
3. :meth:`EmbeddingAPI.build` — per slice: the upstream call; no I/O.
4. on status ≥ 400 :meth:`EmbeddingAPI.error`; else :meth:`EmbeddingAPI.decode`, which raises
   :class:`UpstreamUnreachable` (502) for an answer that is not the provider's shape or holds another
   number of vectors than texts sent.

Vectors stay as the provider sent them: a list of floats (JSON) or the raw little-endian float32 bytes
(an OpenAI-shaped base64 answer); :func:`encode_openai` converts only when the client asked for the
other encoding.

Usage: where the provider counts input tokens (Titan, Vertex, Bedrock's token-count header, Gemini's
``usageMetadata``) those counts are used; otherwise :func:`estimate_tokens` counts
``ceil(UTF-8 bytes / 4)`` per text (OpenAI's rule of thumb of ~4 characters a token), and the answer's
``usage`` carries that estimate.
"""

from __future__ import annotations

import base64
import math
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from ..errors import SwitchboardError, UpstreamUnreachable
from ..wire.base import UpstreamCall, WireTarget

__all__ = [
    "BYTES_PER_TOKEN",
    "EmbedBatch",
    "EmbedRequest",
    "EmbeddingAPI",
    "Vector",
    "bad_answer",
    "encode_openai",
    "estimate_tokens",
    "float32_bytes",
]

#: UTF-8 bytes per token for estimates (OpenAI's ~4 characters a token for English text).
BYTES_PER_TOKEN = 4

#: One embedding: floats as a JSON answer gave them, or little-endian float32 bytes (a base64 answer).
Vector = list[float] | bytes


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    texts: list[str]
    #: The client's ``dimensions`` (None: the model's default).
    dimensions: int | None = None
    #: ``base64`` or ``float``: what the client gets back.
    encoding_format: str = "float"


@dataclass(slots=True)
class EmbedBatch:
    """One upstream call's answer: one vector per text sent, in order."""

    vectors: list[Vector]
    #: Input tokens the provider counted for this call (None: it said nothing; the caller estimates).
    input_tokens: int | None = None


class EmbeddingAPI(Protocol):
    name: str

    def check(self, req: EmbedRequest, target: WireTarget) -> None: ...

    def limit(self, model_id: str) -> int:
        """Texts one call may carry for ``model_id`` (the upstream model id)."""
        ...

    def build(self, texts: Sequence[str], req: EmbedRequest, target: WireTarget) -> UpstreamCall: ...

    def decode(self, body: bytes, headers: Mapping[str, str], count: int, target: WireTarget) -> EmbedBatch: ...

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError: ...


def estimate_tokens(texts: Sequence[str]) -> int:
    """Input tokens of ``texts`` when the provider does not say: ``ceil(UTF-8 bytes / 4)`` per text."""
    return sum(math.ceil(len(t.encode()) / BYTES_PER_TOKEN) for t in texts)


def bad_answer(provider: str, why: str) -> UpstreamUnreachable:
    return UpstreamUnreachable(
        f"{provider} answered an embeddings request with {why}; retry, or check the model is an embedding model"
    )


def float32_bytes(values: Sequence[float]) -> bytes:
    """``values`` as little-endian float32, OpenAI's base64 layout, whatever this machine's byte order."""
    packed = array("f", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _floats(raw: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def encode_openai(vectors: Sequence[Vector], encoding_format: str, model: str, input_tokens: int) -> bytes:
    """OpenAI's ``CreateEmbeddingResponse``: ``data[i].index`` is the position of the text in the request."""
    as_base64 = encoding_format == "base64"
    data: list[dict[str, Any]] = []
    for i, vec in enumerate(vectors):
        value: Any
        if as_base64:
            value = base64.b64encode(vec if isinstance(vec, bytes) else float32_bytes(vec)).decode("ascii")
        else:
            value = _floats(vec) if isinstance(vec, bytes) else vec
        data.append({"object": "embedding", "index": i, "embedding": value})
    answer = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens},
    }
    return msgspec.json.encode(answer)
