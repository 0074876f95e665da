"""``POST /v1/embeddings`` in: OpenAI's ``CreateEmbeddingRequest`` validated, and the model-kind check.

``input`` is a string, a list of strings, a list of token ids or a list of token-id lists (at most
:data:`MAX_INPUTS` items, none empty); ``encoding_format`` ``float`` (the default) or ``base64``;
``dimensions`` a positive integer; ``user`` a string. Every other field is kept for the passthrough.
"""

from __future__ import annotations

from typing import Any

import msgspec

from providers.embeddings.base import EmbedRequest, estimate_tokens
from providers.errors import InvalidRequest

__all__ = ["MAX_INPUTS", "EmbedBody", "decode_embeddings"]

#: Texts (or token arrays) in one request: OpenAI's own limit.
MAX_INPUTS = 2048
_FORMATS = ("float", "base64")


class EmbedBody:
    """The client's request: the body as sent (for the passthrough) and what was read out of it."""

    __slots__ = ("body", "dimensions", "encoding_format", "estimate", "model", "texts")

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.model: str = body["model"]
        #: The strings to embed; None when the client sent token ids (passthrough only).
        self.texts: list[str] | None = None
        self.encoding_format = "float"
        self.dimensions: int | None = None
        #: Input tokens by Switchboard's count (exact for token ids).
        self.estimate = 0

    def request(self) -> EmbedRequest:
        assert self.texts is not None
        return EmbedRequest(self.texts, self.dimensions, self.encoding_format)


def decode_embeddings(body: bytearray) -> EmbedBody:
    """The client's body, validated; raises :class:`InvalidRequest` naming the parameter."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object with 'model' and 'input'")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(
            "'model' must be a non-empty string such as 'openai/text-embedding-3-small'", param="model"
        )
    req = EmbedBody(data)
    _read_input(req, data.get("input"))
    fmt = data.get("encoding_format")
    if fmt is not None:
        if fmt not in _FORMATS:
            raise InvalidRequest(f"'encoding_format' must be 'float' or 'base64', not {fmt!r}", param="encoding_format")
        req.encoding_format = fmt
    dims = data.get("dimensions")
    if dims is not None:
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            raise InvalidRequest("'dimensions' must be a positive integer such as 256", param="dimensions")
        req.dimensions = dims
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string", param="user")
    return req


def _read_input(req: EmbedBody, value: Any) -> None:
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' must not be an empty string", param="input")
        req.texts = [value]
    elif isinstance(value, list) and value:
        if len(value) > MAX_INPUTS:
            raise InvalidRequest(
                f"'input' holds {len(value)} items; send at most {MAX_INPUTS} per request", param="input"
            )
        if all(isinstance(v, str) and v for v in value):
            req.texts = value
        elif all(_is_int(v) for v in value):
            req.estimate = len(value)
            return
        elif all(isinstance(v, list) and v and all(_is_int(t) for t in v) for v in value):
            req.estimate = sum(len(v) for v in value)
            return
        else:
            raise InvalidRequest(
                "'input' must be a string, a list of non-empty strings, a list of token ids or a list of "
                "token-id lists",
                param="input",
            )
    else:
        raise InvalidRequest("'input' is required: a string or a non-empty list of strings", param="input")
    req.estimate = estimate_tokens(req.texts)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
