"""OpenAI-compatible embeddings (``openai-completions`` providers: OpenAI, Groq, Together, vLLM, Ollama...):
``POST {base}/embeddings``, the client's body with only ``model`` replaced, the answer relayed as bytes.

:func:`read_usage` takes ``usage.prompt_tokens`` out of an answer without decoding its vectors.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["NAME", "adapt", "embeddings_url", "read_usage"]

NAME = "openai"


def embeddings_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/embeddings"


def adapt(body: dict[str, Any], model: str, provider: str) -> None:
    """The body for the upstream: every field the client sent, ``model`` the upstream's id."""
    body["model"] = model


class _Usage(msgspec.Struct):
    prompt_tokens: float | None = None
    total_tokens: float | None = None


class _Answer(msgspec.Struct):
    """An embeddings answer reduced to its usage; ``data`` is skipped, its syntax still checked."""

    usage: _Usage | None = None


_ANSWER = msgspec.json.Decoder(_Answer)


def read_usage(body: bytes) -> int | None:
    """``usage.prompt_tokens`` (else ``total_tokens``) of an answer; None when absent. Raises
    ``msgspec.DecodeError`` / ``msgspec.ValidationError`` when ``body`` is not a JSON object."""
    usage = _ANSWER.decode(body).usage
    if usage is None:
        return None
    value = usage.prompt_tokens if usage.prompt_tokens is not None else usage.total_tokens
    return int(value) if value is not None and value >= 0 else None
