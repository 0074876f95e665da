"""Mistral embeddings: ``POST {base}/embeddings``, OpenAI's shape with Mistral's field names.

Mistral takes ``model``, ``input`` (a string or strings), ``encoding_format`` (``float``/``base64``),
``output_dimension`` and ``output_dtype``, and refuses fields it does not know. So OpenAI's ``dimensions``
becomes ``output_dimension``, ``user`` is dropped, and token arrays are refused here (400, ``input``)
rather than there. The answer is OpenAI's shape with ``usage`` and is relayed as it is.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest
from .openai import embeddings_url, read_usage

__all__ = ["NAME", "adapt", "embeddings_url", "read_usage"]

NAME = "mistral"


def adapt(body: dict[str, Any], model: str, provider: str) -> None:
    body["model"] = model
    body.pop("user", None)
    if "dimensions" in body:
        body["output_dimension"] = body.pop("dimensions")
    value = body.get("input")
    if isinstance(value, list) and any(not isinstance(v, str) for v in value):
        raise InvalidRequest(
            f"{provider} embeds text only: send 'input' as a string or a list of strings, not token ids",
            param="input",
        )
