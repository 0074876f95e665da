"""Wire APIs: one module per upstream API, looked up by the name providers and models declare.

The names below are the built-in ones (:mod:`providers.builtins` registers them); an installed extension
adds its own through :mod:`providers.extensions`, and :func:`translating_wire` finds both the same way.
"""

from __future__ import annotations

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


def translating_wire(api: str) -> WireAPI | None:
    """The wire API called ``api`` (built in or from an extension), imported on first use (cold paths stay
    out of start-up time); None when nothing translates to it."""
    from ..extensions import active  # that module imports this package's contract

    return active().wire(api)
