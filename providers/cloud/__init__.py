"""Cloud adapters, looked up by the name a provider row declares (``"adapter"`` in providers.json)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import CloudAdapter

__all__ = ["adapter_for"]

_MODULES = {
    "bedrock": "providers.cloud.bedrock",
    "vertex": "providers.cloud.vertex",
    "azure": "providers.cloud.azure",
    "cloudflare": "providers.cloud.cloudflare",
    "codex": "providers.cloud.codex",
    "copilot": "providers.cloud.copilot",
}
_loaded: dict[str, CloudAdapter] = {}


def adapter_for(name: str) -> CloudAdapter:
    """The adapter called ``name``, imported on first use (boto3, google-auth and azure-identity are heavy)."""
    adapter = _loaded.get(name)
    if adapter is None:
        adapter = importlib.import_module(_MODULES[name]).ADAPTER
        _loaded[name] = adapter
    return adapter
