"""Live model discovery: merge a provider's own model list into the shipped catalog.

Runs in the background (never on the request path): ``GET {base_url}/models`` with the provider's
credentials, an OpenAI-style ``{"data": [{"id": ...}, ...]}`` answer. The ids are cached on disk
(``SWITCHBOARD_HOME/cache/models/<provider>.json``) so a restart lists them at once. Catalog entries
win over discovered ones: discovery only adds ids the catalog does not know, with the limits the list
reports (OpenRouter-style ``context_length``) or conservative defaults.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from .credentials import ResolvedAuth

if TYPE_CHECKING:
    import httpx
from .registry import Model, Provider

__all__ = ["DiscoveredModel", "describe_failure", "fetch_models", "load_cached", "merge_discovered", "save_cached"]

log = logging.getLogger(__name__)


class DiscoveredModel(msgspec.Struct, frozen=True):
    id: str
    context_window: int | None = None
    max_tokens: int | None = None


class _Entry(msgspec.Struct):
    id: str
    context_length: int | None = None
    context_window: int | None = None
    max_completion_tokens: int | None = None


class _ListAnswer(msgspec.Struct):
    data: list[_Entry]


class _CacheFile(msgspec.Struct):
    fetched_at: float
    models: list[DiscoveredModel]


async def fetch_models(http: httpx.AsyncClient, auth: ResolvedAuth) -> list[DiscoveredModel]:
    """The provider's live list. Raises httpx errors and msgspec errors; the caller logs them."""
    headers = {k: v for k, v in auth.headers.items() if k != "content-type"}
    resp = await http.get(auth.base_url.rstrip("/") + "/models", headers=headers)
    resp.raise_for_status()
    answer = msgspec.json.decode(resp.content, type=_ListAnswer)
    return [DiscoveredModel(e.id, e.context_window or e.context_length, e.max_completion_tokens) for e in answer.data]


def describe_failure(exc: Exception) -> str:
    """A log line's worth about a failed fetch: status or error kind and the URL, never headers or body.

    The query string is dropped (some providers take the key there); response bodies may echo the key.
    """
    import httpx  # discovery runs after start-up; keep httpx off the start-up path

    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from GET {_safe_url(exc.request)}"
    if isinstance(exc, httpx.RequestError):
        try:
            return f"{type(exc).__name__} on GET {_safe_url(exc.request)}"
        except RuntimeError:  # no request attached
            return type(exc).__name__
    if isinstance(exc, msgspec.DecodeError):
        return "the answer is not an OpenAI-style model list ({'data': [{'id': ...}]})"
    return type(exc).__name__


def _safe_url(request: httpx.Request) -> str:
    return str(request.url.copy_with(query=None, fragment=None))


def merge_discovered(provider: Provider, found: list[DiscoveredModel]) -> Provider:
    known = {m.id for m in provider.models}
    extra = [
        Model(
            id=d.id,
            name=d.id,
            context_window=d.context_window or 128_000,
            max_tokens=min(d.max_tokens or 16_384, d.context_window or 128_000),
            source="discovered",
        )
        for d in found
        if d.id not in known
    ]
    return provider.with_models((*provider.models, *extra)) if extra else provider


def _cache_path(cache_dir: Path, provider_id: str) -> Path:
    return cache_dir / f"{provider_id}.json"


def load_cached(cache_dir: Path, provider_id: str) -> tuple[float, list[DiscoveredModel]] | None:
    try:
        data = msgspec.json.decode(_cache_path(cache_dir, provider_id).read_bytes(), type=_CacheFile)
    except (OSError, msgspec.DecodeError):
        return None
    return data.fetched_at, data.models


def save_cached(cache_dir: Path, provider_id: str, models: list[DiscoveredModel]) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = _cache_path(cache_dir, provider_id)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(msgspec.json.encode(_CacheFile(time.time(), models)))
    os.replace(tmp, path)
