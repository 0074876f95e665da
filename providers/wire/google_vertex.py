"""Wire API ``google-vertex``: Gemini's ``generateContent`` as Vertex AI serves it; Claude's URL on Vertex.

The same translation as :mod:`providers.wire.google_generative_ai`; its own name keeps Vertex thought
signatures apart from the Gemini API's (:mod:`providers.wire.replay`), and a rejected credential points
at ADC, not GEMINI_API_KEY.

Claude on Vertex speaks ``anthropic-messages`` through ``rawPredict`` / ``streamRawPredict``: the Messages
body without ``model`` and with ``anthropic_version`` (:data:`ANTHROPIC_VERSION`), the model in the URL
(:func:`raw_predict_url`). :mod:`providers.wire.anthropic_messages` builds that variant when the
:class:`~providers.wire.base.WireTarget` says ``vertex_raw_predict``, so the body is encoded once.
The base URLs (``.../publishers/google``, ``.../publishers/anthropic``) and auth come from the Vertex cloud
adapter (``providers/cloud/vertex.py``).
"""

from __future__ import annotations

from ..urlpath import path_segment
from .base import WireTarget
from .google_generative_ai import GoogleGenerativeAI

__all__ = ["ANTHROPIC_VERSION", "API", "raw_predict_url"]

#: The Messages version Vertex takes in the body, in place of the ``anthropic-version`` header.
ANTHROPIC_VERSION = "vertex-2023-10-16"

API = GoogleGenerativeAI(
    "google-vertex",
    key_hint="run 'gcloud auth application-default login' (or set GOOGLE_APPLICATION_CREDENTIALS), "
    "or set GOOGLE_CLOUD_API_KEY",
)


def raw_predict_url(target: WireTarget, *, stream: bool) -> str:
    """``{base_url}/models/{model}:rawPredict`` (``:streamRawPredict`` when streaming); the model id is one
    path segment (``@`` kept: Vertex's version separator, as in ``claude-sonnet-4-5@20250929``)."""
    method = "streamRawPredict" if stream else "rawPredict"
    segment = path_segment(target.model_id, provider=target.provider_name, safe="@")
    return f"{target.base_url.rstrip('/')}/models/{segment}:{method}"
