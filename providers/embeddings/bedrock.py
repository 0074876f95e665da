"""Amazon Bedrock embeddings through ``InvokeModel``: ``POST {base}/model/{modelId}/invoke``, SigV4-signed
by the Bedrock cloud adapter.

* Amazon Titan Text Embeddings V2 (``amazon.titan-embed-text-v2:0``, any id containing ``titan-embed``):
  one text per call, ``{"inputText", "dimensions"?, "normalize": true}`` → ``{"embedding": [...],
  "inputTextTokenCount": n}``.
* Cohere Embed v3 (ids containing ``cohere.embed``): up to 96 texts per call, ``{"texts": [...],
  "input_type": "search_document"}`` → ``{"embeddings": [[...], ...], "id", "response_type":
  "embeddings_floats"}`` (or ``{"embeddings": {"float": [...]}}`` with ``embedding_types``). Cohere gives
  no token counts in the body; Bedrock's ``x-amzn-bedrock-input-token-count`` header is used when
  present. Embed v3 has a fixed 1024 dimensions: ``dimensions`` is refused (400).

``input_type`` is ``search_document``: OpenAI's request has no such field, and documents are what
batches embed most; a query embedded as a document still compares well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ..errors import InvalidRequest, SwitchboardError
from ..wire import bedrock_stream
from ..wire.base import UpstreamCall, WireTarget
from ..wire.bedrock_converse import model_path
from .base import EmbedBatch, EmbedRequest, bad_answer

__all__ = ["API", "COHERE_LIMIT", "TITAN_LIMIT"]

TITAN_LIMIT = 1
COHERE_LIMIT = 96
_COUNT_HEADER = "x-amzn-bedrock-input-token-count"


class _Titan(msgspec.Struct, rename="camel"):
    embedding: list[float]
    input_text_token_count: int | None = None


class _CohereByType(msgspec.Struct):
    floats: list[list[float]] = msgspec.field(name="float")


class _Cohere(msgspec.Struct):
    embeddings: list[list[float]] | _CohereByType


_TITAN = msgspec.json.Decoder(_Titan)
_COHERE = msgspec.json.Decoder(_Cohere)


def _is_cohere(target: WireTarget) -> bool:
    return "cohere.embed" in target.model_id


class _BedrockInvoke:
    name = "bedrock-invoke"

    def check(self, req: EmbedRequest, target: WireTarget) -> None:
        if _is_cohere(target) and req.dimensions is not None:
            raise InvalidRequest(
                f"{target.provider_name}: Cohere Embed v3 ({target.model_id}) always answers 1024 dimensions; "
                "remove 'dimensions' or use amazon.titan-embed-text-v2:0 (256, 512 or 1024)",
                param="dimensions",
            )

    def limit(self, model_id: str) -> int:
        return COHERE_LIMIT if "cohere.embed" in model_id else TITAN_LIMIT

    def build(self, texts: Sequence[str], req: EmbedRequest, target: WireTarget) -> UpstreamCall:
        body: dict[str, Any]
        if _is_cohere(target):
            body = {"texts": list(texts), "input_type": "search_document"}
        else:
            body = {"inputText": texts[0], "normalize": True}
            if req.dimensions is not None:
                body["dimensions"] = req.dimensions
        url = f"{target.base_url.rstrip('/')}{model_path(target.model_id, target.provider_name)}/invoke"
        headers = {"content-type": "application/json", "accept": "application/json"}
        return UpstreamCall(url, msgspec.json.encode(body), headers)

    def decode(self, body: bytes, headers: Mapping[str, str], count: int, target: WireTarget) -> EmbedBatch:
        header_tokens = _int(headers.get(_COUNT_HEADER))
        try:
            if not _is_cohere(target):
                titan = _TITAN.decode(body)
                if count != 1:
                    raise bad_answer(target.provider_name, f"one embedding for {count} texts")
                tokens = titan.input_text_token_count if titan.input_text_token_count is not None else header_tokens
                return EmbedBatch([titan.embedding], tokens)
            cohere = _COHERE.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise bad_answer(target.provider_name, f"a body that is not an InvokeModel embedding ({exc})") from exc
        vectors = cohere.embeddings.floats if isinstance(cohere.embeddings, _CohereByType) else cohere.embeddings
        if len(vectors) != count:
            raise bad_answer(target.provider_name, f"{len(vectors)} embeddings for {count} texts")
        return EmbedBatch(list(vectors), header_tokens)

    def error(self, target: WireTarget, status: int, body: bytes, headers: Mapping[str, str]) -> SwitchboardError:
        return bedrock_stream.upstream_error(target.provider_name, status, body, headers)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


API = _BedrockInvoke()
