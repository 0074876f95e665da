"""``GET /v1/models`` and ``switchboard models``: the models of every provider that has credentials.

Entries are OpenAI ``model`` objects (``id``, ``object``, ``created``, ``owned_by``) with Switchboard's
catalog facts added; credentials never appear, only whether a provider is usable.
"""

from __future__ import annotations

from typing import Any

from providers.errors import NotFound
from providers.registry import Model, Provider

from .runtime import Runtime

__all__ = ["get_model", "list_models", "model_entry"]


def model_entry(provider: Provider, model: Model, created: int) -> dict[str, Any]:
    return {
        "id": f"{provider.id}/{model.id}",
        "object": "model",
        "created": created,
        "owned_by": provider.id,
        "name": model.name,
        "provider": provider.id,
        "api": model.api or provider.api,
        "context_window": model.context_window,
        "max_tokens": model.max_tokens,
        "kind": model.kind,
        "reasoning": model.reasoning,
        "input": list(model.input),
        "pricing": {
            "input": model.cost.input,
            "output": model.cost.output,
            "cache_read": model.cost.cache_read,
            "cache_write": model.cost.cache_write,
            "unit": "USD per million tokens",
        },
        "source": model.source,
    }


def list_models(rt: Runtime, provider_id: str | None = None) -> list[dict[str, Any]]:
    created = int(rt.started)
    out: list[dict[str, Any]] = []
    for provider in rt.registry:
        if provider_id is not None and provider.id != provider_id:
            continue
        if not rt.credentials.available(provider):
            continue
        out.extend(model_entry(provider, m, created) for m in provider.models)
    if provider_id is None:
        for alias, target in rt.config.aliases.items():
            try:
                resolved = rt.router.resolve(alias)
            except Exception:  # noqa: S112 - an alias to an unusable provider is simply not listed
                continue
            if rt.credentials.available(resolved.provider):
                out.append(
                    {
                        "id": alias,
                        "object": "model",
                        "created": created,
                        "owned_by": resolved.provider.id,
                        "alias_of": target,
                    }
                )
    return out


def get_model(rt: Runtime, model_id: str) -> dict[str, Any]:
    target = rt.router.resolve(model_id)
    if not rt.credentials.available(target.provider):
        raise NotFound(f"model {model_id!r}: provider {target.provider.id!r} has no credentials", param="model")
    model = target.model or Model(id=target.upstream_model, name=target.upstream_model, source="passthrough")
    entry = model_entry(target.provider, model, int(rt.started))
    if model_id in rt.config.aliases:
        entry["id"] = model_id
        entry["alias_of"] = rt.config.aliases[model_id]
    return entry
