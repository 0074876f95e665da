"""Wire APIs: one module per upstream API, looked up by the name providers and models declare.

The names below are the built-in ones (:mod:`providers.builtins` registers them); an installed extension
adds its own through :mod:`providers.extensions`, and :func:`translating_wire` finds both the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import WireAPI

if TYPE_CHECKING:
    from ..extensions import Extensions

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
    return _active()().wire(api)


def _active() -> Callable[[], Extensions]:
    # On every translated request: an import statement costs ~1 us each time, a global read nothing.
    global _ACTIVE
    if _ACTIVE is None:
        from ..extensions import active  # here: that module imports this package's contract

        _ACTIVE = active
    return _ACTIVE


_ACTIVE: Callable[[], Extensions] | None = None
