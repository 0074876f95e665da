"""Embedding APIs: one module per upstream embedding API, looked up from a Target's wire API.

* OpenAI-shaped (the body relayed with edits): :mod:`.openai` (every ``openai-completions`` provider),
  :mod:`.azure` (Azure's v1 endpoint through its cloud adapter), :mod:`.mistral` (Mistral's field names);
  :func:`openai_shaped` picks one.
* Translated (:class:`~providers.embeddings.base.EmbeddingAPI`): :mod:`.google` (``batchEmbedContents``),
  :mod:`.vertex` (``predict``), :mod:`.bedrock` (``InvokeModel``: Titan V2, Cohere Embed v3);
  :func:`translating_embeddings` picks one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .base import EmbeddingAPI

__all__ = ["OPENAI_SHAPED_APIS", "OpenAIShaped", "openai_shaped", "translating_embeddings"]

#: Wire APIs whose provider serves OpenAI's ``/embeddings`` at its base URL (OpenAI marks some chat models
#: ``openai-responses``; Azure's models default to it).
OPENAI_SHAPED_APIS = frozenset({"openai-completions", "openai-responses", "azure-openai-responses"})

_TRANSLATING = {
    "google-generative-ai": "providers.embeddings.google",
    "google-vertex": "providers.embeddings.vertex",
    "bedrock-converse-stream": "providers.embeddings.bedrock",
}

#: Providers whose OpenAI-compatible endpoint renames fields (by provider id: the quirk of one vendor).
_RENAMING = {"mistral": "providers.embeddings.mistral"}


class OpenAIShaped:
    """The three functions an OpenAI-shaped module exposes."""

    __slots__ = ("adapt", "name", "read_usage", "url")

    def __init__(self, module: ModuleType) -> None:
        self.name: str = module.NAME
        self.adapt: Callable[[dict[str, Any], str, str], None] = module.adapt
        self.url: Callable[[str], str] = module.embeddings_url
        self.read_usage: Callable[[bytes], int | None] = module.read_usage


_loaded: dict[str, Any] = {}


def _load(path: str) -> Any:
    module = _loaded.get(path)
    if module is None:
        module = _loaded[path] = importlib.import_module(path)
    return module


def openai_shaped(provider_id: str, adapter: str) -> OpenAIShaped:
    """The OpenAI-shaped module for a provider (its ``adapter``: ``azure`` has its own)."""
    if adapter == "azure":
        path = "providers.embeddings.azure"
    else:
        path = _RENAMING.get(provider_id, "providers.embeddings.openai")
    key = "shaped:" + path
    shaped = _loaded.get(key)
    if shaped is None:
        shaped = _loaded[key] = OpenAIShaped(_load(path))
    return shaped


def translating_embeddings(api: str) -> EmbeddingAPI | None:
    """The translating module for ``api`` (None: no embedding API is known for it)."""
    path = _TRANSLATING.get(api)
    if path is None:
        return None
    api_obj: EmbeddingAPI = _load(path).API
    return api_obj
