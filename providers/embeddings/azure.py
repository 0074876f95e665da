"""Azure OpenAI embeddings: OpenAI's request and answer on Azure's v1 endpoint.

``POST {base}/embeddings?api-version=...`` where ``base`` is ``https://{resource}.openai.azure.com/openai/v1``;
the body's ``model`` is the deployment (``AZURE_OPENAI_DEPLOYMENT_NAME_MAP``, else the model id), which
the Azure cloud adapter's ``wire_target`` names; its ``finalize`` adds ``api-version`` and the Entra
token. Nothing else differs from :mod:`providers.embeddings.openai`: ``encoding_format``, ``dimensions``
and ``user`` are Azure's own fields too.
"""

from __future__ import annotations

from typing import Any

from .openai import embeddings_url, read_usage

__all__ = ["NAME", "adapt", "embeddings_url", "read_usage"]

NAME = "azure"


def adapt(body: dict[str, Any], model: str, provider: str) -> None:
    body["model"] = model
