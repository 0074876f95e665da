"""Gemini API embeddings: ``POST {base}/models/{model}:batchEmbedContents``.

Request: ``{"requests": [{"model": "models/{model}", "content": {"parts": [{"text": ...}]},
"outputDimensionality": N}, ...]}``, at most :data:`BATCH_LIMIT` requests per call (the API refuses more).
Answer: ``{"embeddings": [{"values": [...]}, ...]}`` in request order; newer answers may add
``usageMetadata.promptTokenCount``, which is used when present (else the caller estimates).
Errors are Google's ``{"error": {"code", "message", "status"}}``, read by the Gemini wire module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ..errors import SwitchboardError
from ..wire import google_generative_ai
from ..wire.base import UpstreamCall, WireTarget
from ..wire.google_generative_ai import gemini_model_path
from .base import EmbedBatch, EmbedRequest, bad_answer

__all__ = ["API", "BATCH_LIMIT"]

#: Requests per ``batchEmbedContents`` call.
BATCH_LIMIT = 100


class _Values(msgspec.Struct):
    values: list[float]


class _Usage(msgspec.Struct, rename="camel"):
    prompt_token_count: int | None = None


class _Answer(msgspec.Struct, rename="camel"):
    embeddings: list[_Values]
    usage_metadata: _Usage | None = None


_DECODER = msgspec.json.Decoder(_Answer)


class _Gemini:
    name = "google-generative-ai"

    def check(self, req: EmbedRequest, target: WireTarget) -> None:
        return None

    def limit(self, model_id: str) -> int:
        return BATCH_LIMIT

    def build(self, texts: Sequence[str], req: EmbedRequest, target: WireTarget) -> UpstreamCall:
        path = gemini_model_path(target)
        requests: list[dict[str, Any]] = []
        for text in texts:
            one: dict[str, Any] = {"model": path, "content": {"parts": [{"text": text}]}}
            if req.dimensions is not None:
                one["outputDimensionality"] = req.dimensions
            requests.append(one)
        url = f"{target.base_url.rstrip('/')}/{path}:batchEmbedContents"
        return UpstreamCall(url, msgspec.json.encode({"requests": requests}), {"content-type": "application/json"})

    def decode(self, body: bytes, headers: Mapping[str, str], count: int, target: WireTarget) -> EmbedBatch:
        try:
            answer = _DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise bad_answer(target.provider_name, f"a body that is not a batchEmbedContents answer ({exc})") from exc
        if len(answer.embeddings) != count:
            raise bad_answer(target.provider_name, f"{len(answer.embeddings)} embeddings for {count} texts")
        usage = answer.usage_metadata
        tokens = usage.prompt_token_count if usage is not None else None
        return EmbedBatch([e.values for e in answer.embeddings], tokens)

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return google_generative_ai.API.error(target, status, body, headers)


API = _Gemini()
