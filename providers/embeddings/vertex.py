"""Vertex AI text embeddings: ``POST {base}/models/{model}:predict`` (base ``.../publishers/google``).

Request: ``{"instances": [{"content": text}, ...], "parameters": {"outputDimensionality": N}}``.
Answer: ``{"predictions": [{"embeddings": {"values": [...], "statistics": {"token_count": n,
"truncated": false}}}, ...]}``; the token counts are the usage. Limits per call: 250 texts
(``text-embedding-*``, ``text-multilingual-embedding-*``), and one for ``gemini-embedding-*``, which
takes a single instance per request. The Vertex cloud adapter authorizes (ADC token or express key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ..errors import SwitchboardError
from ..urlpath import path_segment
from ..wire import google_vertex
from ..wire.base import UpstreamCall, WireTarget
from .base import EmbedBatch, EmbedRequest, bad_answer

__all__ = ["API", "BATCH_LIMIT"]

#: Texts per ``predict`` call for the text-embedding models.
BATCH_LIMIT = 250


class _Statistics(msgspec.Struct):
    token_count: float | None = None


class _Embeddings(msgspec.Struct):
    values: list[float]
    statistics: _Statistics | None = None


class _Prediction(msgspec.Struct):
    embeddings: _Embeddings


class _Answer(msgspec.Struct):
    predictions: list[_Prediction]


_DECODER = msgspec.json.Decoder(_Answer)


class _VertexPredict:
    name = "google-vertex"

    def check(self, req: EmbedRequest, target: WireTarget) -> None:
        return None

    def limit(self, model_id: str) -> int:
        return 1 if model_id.startswith("gemini-embedding") else BATCH_LIMIT

    def build(self, texts: Sequence[str], req: EmbedRequest, target: WireTarget) -> UpstreamCall:
        body: dict[str, Any] = {"instances": [{"content": t} for t in texts]}
        if req.dimensions is not None:
            body["parameters"] = {"outputDimensionality": req.dimensions}
        segment = path_segment(target.model_id, provider=target.provider_name, safe="@")
        url = f"{target.base_url.rstrip('/')}/models/{segment}:predict"
        return UpstreamCall(url, msgspec.json.encode(body), {"content-type": "application/json"})

    def decode(self, body: bytes, headers: Mapping[str, str], count: int, target: WireTarget) -> EmbedBatch:
        try:
            answer = _DECODER.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise bad_answer(target.provider_name, f"a body that is not a predict answer ({exc})") from exc
        if len(answer.predictions) != count:
            raise bad_answer(target.provider_name, f"{len(answer.predictions)} predictions for {count} texts")
        counts = [p.embeddings.statistics.token_count for p in answer.predictions if p.embeddings.statistics]
        tokens = int(sum(c for c in counts if c is not None)) if len(counts) == count else None
        return EmbedBatch([p.embeddings.values for p in answer.predictions], tokens)

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return google_vertex.API.error(target, status, body, headers)


API = _VertexPredict()
