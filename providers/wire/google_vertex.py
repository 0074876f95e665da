"""Wire API ``google-vertex``: Gemini's ``generateContent`` as Vertex AI serves it.

The same translation as :mod:`providers.wire.google_generative_ai`; its own name keeps Vertex thought
signatures apart from the Gemini API's (:mod:`providers.wire.replay`), and a rejected credential points
at ADC, not GEMINI_API_KEY.
URL and auth come from the Vertex cloud adapter (``providers/cloud/vertex.py``).
"""

from __future__ import annotations

from .google_generative_ai import GoogleGenerativeAI

__all__ = ["API"]

API = GoogleGenerativeAI(
    "google-vertex",
    key_hint="run 'gcloud auth application-default login' (or set GOOGLE_APPLICATION_CREDENTIALS), "
    "or set GOOGLE_CLOUD_API_KEY",
)
