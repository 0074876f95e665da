"""Wire APIs: one module per upstream API, looked up by the name providers and models declare."""

from __future__ import annotations

import importlib

from .base import WireAPI

__all__ = ["translating_wire"]

#: Wire APIs reached through the canonical model. ``openai-completions`` is here for the surfaces whose
#: native API differs (Messages, Responses); the OpenAI chat surface takes its passthrough fast path.
_TRANSLATING = {
    "openai-completions": "providers.wire.openai_chat",
    "anthropic-messages": "providers.wire.anthropic_messages",
    "google-generative-ai": "providers.wire.google_generative_ai",
    "openai-responses": "providers.wire.openai_responses",
    "bedrock-converse-stream": "providers.wire.bedrock_converse",
    "google-vertex": "providers.wire.google_vertex",
    "openai-codex-responses": "providers.wire.openai_codex_responses",
}
_loaded: dict[str, WireAPI] = {}


def translating_wire(api: str) -> WireAPI | None:
    """The module object for ``api``, imported on first use (cold paths stay out of start-up time)."""
    wire = _loaded.get(api)
    if wire is None and api in _TRANSLATING:
        wire = importlib.import_module(_TRANSLATING[api]).API
        _loaded[api] = wire
    return wire
