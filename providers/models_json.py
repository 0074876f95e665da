"""``models.json``: custom providers and overrides of built-in ones.

Format (``{"providers": {"<id>": ProviderConfig}}``), as the reference implementation documents it:

* A **custom** provider (an id that is not built in) needs ``baseUrl`` and ``api`` (each at provider
  level, or on every model) and lists its ``models``. ``apiKey`` is optional (Ollama needs none);
  ``authHeader: true`` makes it required.
* A **built-in** provider with only ``baseUrl``/``headers``/``compat`` is routed through another URL and
  keeps its models and credentials; the ``baseUrl`` then applies to every catalog model, also those
  that have a URL of their own. ``models`` entries are upserted by id; ``modelOverrides`` patch catalog
  models by id (``cost`` partially; unknown ids are reported, not fatal).

* A provider **instance** (``"extends": "<built-in id>"``, under an id that is not built in) is that
  provider again, with its wire API, adapter, models and compat, but its own credential, so that two
  OpenAI organisations, two Azure resources or two Bedrock regions are separate routing targets. Its key
  is its own: ``apiKey`` here (required unless the provider has a cloud adapter with an ambient chain,
  AWS, Google ADC or Entra ID), an ``auth.json`` entry under the instance's id, or ``--api-key
  <id>=...``; the built-in's environment variables are not read for it. ``baseUrl``, ``headers``,
  ``compat``, ``models`` and ``modelOverrides`` apply as for a built-in; a cloud adapter's settings
  (``AWS_REGION``, ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, ``GOOGLE_CLOUD_LOCATION``, Azure's resource)
  go in the ``"env"`` of the instance's ``auth.json`` entry, which wins over the process environment
  for that instance only.

Parsing is strict: an unknown key or a wrong type raises :class:`ConfigError` naming the file, the key
path and what was expected.

The file is read through :func:`providers.keyvalue.read_config_file`; :func:`command_origin` hands the
credential lookup the verdict on the read the registry was last built from (by :func:`apply_models_json`),
with the ``!command`` values that read held.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import msgspec

from .errors import ConfigError
from .extensions import active
from .keyvalue import Origin, read_config_file
from .registry import (
    DEFAULT_COMPAT,
    Compat,
    CostTier,
    Model,
    ModelRow,
    Provider,
    Registry,
    default_auth,
    model_from_row,
)

__all__ = ["apply_models_json", "command_origin", "load_models_json"]

log = logging.getLogger(__name__)

#: file → the verdict on its latest successful read, limited to the !command values that read held.
_origins: dict[Path, Origin] = {}


class _CostPatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """A partial :class:`Cost`: the fields given replace the catalog's, the rest are kept."""

    input: float | None = None
    output: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    tiers: tuple[CostTier, ...] | None = None


class _ModelOverride(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    name: str | None = None
    reasoning: bool | None = None
    thinking_level_map: dict[str, str | None] | None = None
    input: list[Literal["text", "image"]] | None = None
    cost: _CostPatch | None = None
    context_window: int | None = None
    max_tokens: int | None = None
    headers: dict[str, str] | None = None
    compat: Compat | None = None


class _ProviderConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    #: A built-in provider id: this one is an instance of it (see the module docstring).
    extends: str | None = None
    name: str | None = None
    base_url: str | None = None
    api: str | None = None
    api_key: str | None = None
    headers: dict[str, str] = {}
    auth_header: bool = False
    compat: Compat | None = None
    models: list[ModelRow] = []
    model_overrides: dict[str, _ModelOverride] = {}


def load_models_json(path: Path) -> dict[str, _ProviderConfig]:
    """Parse and validate the file; ``{}`` when it does not exist."""
    return _load(path)[0]


def _load(path: Path) -> tuple[dict[str, _ProviderConfig], Origin | None]:
    """The parsed file and the verdict on the read, limited to the ``!command`` values it held."""
    try:
        found = read_config_file(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    if found is None:
        return {}, None
    out = _parse(path, found.data)
    return out, Origin(path, found.origin.refusal, frozenset(_commands(msgspec.json.decode(found.data))))


def command_origin(path: Path) -> Origin:
    """Where the ``!command`` values of the registry's ``models.json`` settings came from."""
    return _origins.get(path) or Origin(path, f"{path} has not been read successfully", frozenset())


def _commands(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node] if node.startswith("!") else []
    if isinstance(node, dict):
        return [c for v in node.values() for c in _commands(v)]
    if isinstance(node, list):
        return [c for v in node for c in _commands(v)]
    return []


def _parse(path: Path, raw: bytes) -> dict[str, _ProviderConfig]:
    try:
        top = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    except msgspec.DecodeError as exc:
        raise ConfigError(f'{path}: not valid JSON ({exc}); expected {{"providers": {{...}}}}') from exc
    extra = set(top) - {"providers"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level key {sorted(extra)[0]!r}; expected only 'providers'")
    if "providers" not in top:
        return {}
    try:
        providers = msgspec.json.decode(top["providers"], type=dict[str, msgspec.Raw])
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path}: 'providers' must be an object mapping provider ids to settings") from exc
    out: dict[str, _ProviderConfig] = {}
    for pid, body in providers.items():
        try:
            out[pid] = msgspec.json.decode(body, type=_ProviderConfig)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: {_where(exc, f'providers.{pid}', body)}") from exc
        _check_api(path, pid, out[pid])
    return out


def _where(exc: msgspec.ValidationError, prefix: str, body: msgspec.Raw) -> str:
    """msgspec's message with ``$`` replaced by the key path; map keys named instead of ``[...]``."""
    message = str(exc)
    if "`$.modelOverrides[...]" in message:
        # msgspec does not name map keys; decode the overrides one by one to find the culprit.
        try:
            raw = msgspec.json.decode(body, type=dict[str, msgspec.Raw]).get("modelOverrides")
            overrides = msgspec.json.decode(raw, type=dict[str, msgspec.Raw]) if raw else {}
        except msgspec.ValidationError:
            overrides = {}
        for mid, item in overrides.items():
            try:
                msgspec.json.decode(item, type=_ModelOverride)
            except msgspec.ValidationError as inner:
                return _where(inner, f"{prefix}.modelOverrides.{mid}", item)
    message = message.replace("`$", f"`{prefix}")
    if " - at " not in message:
        message += f" - at `{prefix}`"
    return message


def _check_api(path: Path, pid: str, cfg: _ProviderConfig) -> None:
    apis = [("api", cfg.api)] + [(f"models[{i}].api", m.api) for i, m in enumerate(cfg.models)]
    for key, api in apis:
        names = active().api_names()  # the built-in wire APIs and those of installed extensions
        if api is not None and api not in names:
            raise ConfigError(f"{path}: providers.{pid}.{key} is {api!r}; expected one of {', '.join(names)}")


def apply_models_json(registry: Registry, path: Path) -> Registry:
    """The registry with the file's custom providers added and its overrides applied."""
    configs, origin = _load(path)
    builtin = {p.id for p in registry}
    for pid, cfg in configs.items():
        base = registry.get(pid)
        if cfg.extends is not None:
            provider = _instance(pid, cfg, registry, builtin, path)
        else:
            provider = _override(base, cfg, path) if base else _custom(pid, cfg, path)
        registry = registry.replace(provider)
    # Only now: a file that fails half-way leaves the previous registry, and its verdict, in use.
    if origin is None:
        _origins.pop(path, None)
    else:
        _origins[path] = origin
    return registry


def _custom(pid: str, cfg: _ProviderConfig, path: Path) -> Provider:
    if not cfg.base_url and not (cfg.models and all(m.base_url for m in cfg.models)):
        raise ConfigError(
            f"{path}: providers.{pid}.baseUrl is required for a custom provider "
            '(for example "http://localhost:11434/v1" for Ollama)'
        )
    if not cfg.api and not (cfg.models and all(m.api for m in cfg.models)):
        raise ConfigError(
            f"{path}: providers.{pid}.api is required for a custom provider "
            '(for example "openai-completions" for Ollama, LM Studio or vLLM)'
        )
    if not cfg.models:
        log.warning("%s: custom provider %r lists no models; any model id is passed through", path, pid)
    return Provider(
        id=pid,
        name=cfg.name or pid,
        api=(api := cfg.api or cfg.models[0].api or "openai-completions"),
        auth=default_auth(api),
        base_url=(cfg.base_url or "").rstrip("/"),
        headers=dict(cfg.headers),
        compat=DEFAULT_COMPAT.merged(cfg.compat),
        discovery=False,
        login_hint=f"set providers.{pid}.apiKey in {path}",
        models=tuple(model_from_row(m, "models.json") for m in cfg.models),
        origin="models.json",
        config_api_key=cfg.api_key,
        auth_header=cfg.auth_header,
    )


def _instance(pid: str, cfg: _ProviderConfig, registry: Registry, builtin: set[str], path: Path) -> Provider:
    """Another credential (and URL) for a built-in provider, under its own id."""
    assert cfg.extends is not None
    where = f"{path}: providers.{pid}"
    if pid in builtin:
        raise ConfigError(f"{where}.extends: {pid!r} is itself a provider; give the instance another id")
    parent = registry.get(cfg.extends) if cfg.extends in builtin else None
    if parent is None:
        close = difflib.get_close_matches(cfg.extends, sorted(builtin), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else " (run 'switchboard providers' to list them)"
        raise ConfigError(f"{where}.extends: unknown provider {cfg.extends!r}{hint}")
    if cfg.api_key is None and not parent.adapter:
        raise ConfigError(
            f"{where}.apiKey is required for an instance of {parent.id!r}: its own key, as a literal, "
            '"$ENV_VAR" or "!command"'
        )
    provider = _override(parent, cfg, path)
    return replace(
        provider,
        id=pid,
        name=cfg.name or f"{parent.name} ({pid})",
        env_vars=(),
        login_hint=f"set providers.{pid}.apiKey in {path}",
        origin="models.json",
    )


def _override(base: Provider, cfg: _ProviderConfig, path: Path) -> Provider:
    models = {m.id: m for m in base.models}
    if cfg.base_url:
        # Routing a provider through another URL (a corporate proxy) covers all its catalog models,
        # including those with a URL of their own, as in the reference implementation.
        models = {mid: replace(m, base_url=None) if m.base_url else m for mid, m in models.items()}
    for mid, ov in cfg.model_overrides.items():
        if mid not in models:
            log.warning("%s: providers.%s.modelOverrides.%s names no known model; ignored", path, base.id, mid)
            continue
        models[mid] = _patch(models[mid], ov)
    for row in cfg.models:
        models[row.id] = model_from_row(row, "models.json")
    return replace(
        base,
        name=cfg.name or base.name,
        api=cfg.api or base.api,
        auth=default_auth(cfg.api) if cfg.api and cfg.api != base.api else base.auth,
        base_url=(cfg.base_url or base.base_url).rstrip("/"),
        headers={**base.headers, **cfg.headers},
        compat=base.compat.merged(cfg.compat),
        models=tuple(models.values()),
        config_api_key=cfg.api_key,
        auth_header=cfg.auth_header,
    )


def _patch(model: Model, ov: _ModelOverride) -> Model:
    cost = model.cost
    if ov.cost is not None:
        given = {f: v for f in ov.cost.__struct_fields__ if (v := getattr(ov.cost, f)) is not None}
        cost = msgspec.structs.replace(cost, **given)
    return replace(
        model,
        name=ov.name or model.name,
        reasoning=model.reasoning if ov.reasoning is None else ov.reasoning,
        thinking_level_map=ov.thinking_level_map or model.thinking_level_map,
        input=tuple(ov.input) if ov.input else model.input,
        cost=cost,
        context_window=ov.context_window or model.context_window,
        max_tokens=ov.max_tokens or model.max_tokens,
        headers={**model.headers, **(ov.headers or {})},
        compat=model.compat.merged(ov.compat) if model.compat else ov.compat,
    )
