"""Providers and models as data.

A built-in provider is a row of ``data/providers.json``; its chat models are ``data/models/<id>.json``.
An extension's provider (:mod:`providers.extensions`) is a row of the same shape; both are validated and
converted by :func:`providers_from_rows`, the one path every provider row takes (the built-ins are the
first extension registered, :mod:`providers.builtins`). Custom providers and overrides from
``models.json`` become the same :class:`Provider` / :class:`Model` objects, so the router, the credential
resolver and the wire APIs never ask where a provider came from. Instances are immutable; a config
reload builds a new :class:`Registry`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal

import msgspec

__all__ = [
    "API_NAMES",
    "DEFAULT_COMPAT",
    "Compat",
    "Cost",
    "CostTier",
    "Model",
    "ModelKind",
    "ModelRow",
    "Provider",
    "ProviderRow",
    "Registry",
    "default_auth",
    "load_builtin_models",
    "load_builtin_providers",
    "model_from_row",
    "providers_from_rows",
]

#: Every wire API a provider or model may name.
API_NAMES = (
    "openai-completions",
    "openai-responses",
    "anthropic-messages",
    "google-generative-ai",
    "google-vertex",
    "bedrock-converse-stream",
    "azure-openai-responses",
    "openai-codex-responses",
)

AuthStyle = Literal["bearer", "x-api-key", "x-goog-api-key", "api-key", "none"]
#: A catalog row's ``kind``: each surface serves one kind and refuses the other with a 400.
ModelKind = Literal["chat", "embedding"]

_DEFAULT_AUTH: dict[str, AuthStyle] = {
    "anthropic-messages": "x-api-key",
    "google-generative-ai": "x-goog-api-key",
    "google-vertex": "x-goog-api-key",
    "azure-openai-responses": "api-key",
}


def default_auth(api: str) -> AuthStyle:
    """How a plain API key travels on ``api`` when nothing says otherwise."""
    return _DEFAULT_AUTH.get(api, "bearer")


class Compat(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", omit_defaults=True):
    """Request-shape quirks of an OpenAI-compatible upstream (see the facts file, compat section).

    ``None`` means "not said here": merging keeps the value from the layer below.
    """

    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    supports_developer_role: bool | None = None
    supports_store: bool | None = None
    supports_reasoning_effort: bool | None = None
    supports_strict_mode: bool | None = None
    supports_usage_in_streaming: bool | None = None
    thinking_format: (
        Literal["openai", "openrouter", "deepseek", "zai", "qwen", "qwen-chat-template", "together"] | None
    ) = None

    def merged(self, over: Compat | None) -> Compat:
        """This compat with every field that ``over`` sets replaced."""
        if over is None:
            return self
        changes = {f: v for f in self.__struct_fields__ if (v := getattr(over, f)) is not None}
        return msgspec.structs.replace(self, **changes) if changes else self


#: What an OpenAI-compatible upstream is assumed to accept when nothing says otherwise.
DEFAULT_COMPAT = Compat(
    max_tokens_field="max_completion_tokens",
    supports_developer_role=True,
    supports_store=True,
    supports_reasoning_effort=True,
    supports_strict_mode=True,
    supports_usage_in_streaming=True,
    thinking_format="openai",
)


class CostTier(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Prices that apply to a whole request once its input exceeds ``input_tokens_above``."""

    input_tokens_above: int
    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0


class Cost(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """Prices in US dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0
    tiers: tuple[CostTier, ...] = ()


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    name: str
    context_window: int = 128_000
    max_tokens: int = 16_384
    cost: Cost = field(default_factory=Cost)
    reasoning: bool = False
    input: tuple[str, ...] = ("text",)
    #: Overrides of the provider's wire API / base URL for this model only.
    api: str | None = None
    base_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    compat: Compat | None = None
    #: Thinking level (off/minimal/low/medium/high/xhigh/max) → value the provider expects; None = unsupported.
    thinking_level_map: Mapping[str, str | None] | None = None
    #: "catalog" (shipped data), "discovered" (provider's model list), "models.json".
    source: str = "catalog"
    #: What the model does: "chat" (the chat surfaces) or "embedding" (``POST /v1/embeddings`` only).
    kind: ModelKind = "chat"


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    api: str
    base_url: str
    #: Env vars holding the key, first non-empty wins.
    env_vars: tuple[str, ...] = ()
    #: How the key is sent upstream.
    auth: AuthStyle = "bearer"
    #: Env vars substituted into ``{NAME}`` placeholders of ``base_url`` (e.g. CLOUDFLARE_ACCOUNT_ID).
    url_env: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    compat: Compat = DEFAULT_COMPAT
    #: GET {base_url}/models answers an OpenAI-style list we can merge into the catalog.
    discovery: bool = False
    #: Login command or doc hint shown when no credential is found.
    login_hint: str = ""
    models: tuple[Model, ...] = ()
    #: "builtin", "extension" (see :mod:`providers.extensions` for which package) or "models.json".
    origin: str = "builtin"
    #: models.json ``apiKey`` (unresolved key value) and ``authHeader``.
    config_api_key: str | None = None
    auth_header: bool = False
    #: The cloud adapter (``providers/cloud/``) that signs, authorizes or routes its requests.
    adapter: str = ""

    def model(self, model_id: str) -> Model | None:
        for m in self.models:
            if m.id == model_id:
                return m
        return None

    def with_models(self, models: Iterable[Model]) -> Provider:
        return replace(self, models=tuple(models))


class ModelRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    id: str
    name: str | None = None
    context_window: int = 128_000
    max_tokens: int = 16_384
    cost: Cost = Cost()
    reasoning: bool = False
    input: list[Literal["text", "image"]] = msgspec.field(default_factory=lambda: ["text"])
    api: str | None = None
    base_url: str | None = None
    headers: dict[str, str] = {}
    compat: Compat | None = None
    thinking_level_map: dict[str, str | None] | None = None
    kind: ModelKind = "chat"


def model_from_row(row: Any, source: str) -> Model:
    """Build a :class:`Model` from a decoded catalog or models.json row (same field names)."""
    return Model(
        id=row.id,
        name=row.name or row.id,
        context_window=row.context_window,
        max_tokens=row.max_tokens,
        cost=row.cost,
        reasoning=row.reasoning,
        input=tuple(row.input),
        api=row.api,
        base_url=row.base_url,
        headers=dict(row.headers),
        compat=row.compat,
        thinking_level_map=row.thinking_level_map,
        source=source,
        kind=row.kind,
    )


class ProviderRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """A row of ``data/providers.json``, or of an extension's ``providers()``: the same fields, the same
    checks. ``models`` lists the provider's catalog inline (the built-ins keep theirs in
    ``data/models/<id>.json``, which :mod:`providers.builtins` attaches here)."""

    id: str
    name: str
    api: str
    base_url: str
    env_vars: list[str] = []
    auth: AuthStyle = "bearer"
    url_env: list[str] = []
    headers: dict[str, str] = {}
    compat: Compat | None = None
    discovery: bool = False
    login_hint: str = ""
    adapter: str = ""
    models: list[ModelRow] = []


def providers_from_rows(rows: object, origin: str) -> tuple[Provider, ...]:
    """Validate provider rows (JSON-shaped: the decoded ``providers.json`` list, or an extension's
    ``providers()``) and build their :class:`Provider` objects.

    Raises :class:`msgspec.ValidationError` naming the bad field (``$[2].baseUrl``) and what it expected.
    """
    decoded = msgspec.convert(rows, type=list[ProviderRow])
    return tuple(
        Provider(
            id=r.id,
            name=r.name,
            api=r.api,
            base_url=r.base_url,
            env_vars=tuple(r.env_vars),
            auth=r.auth,
            url_env=tuple(r.url_env),
            headers=dict(r.headers),
            compat=DEFAULT_COMPAT.merged(r.compat),
            discovery=r.discovery,
            login_hint=r.login_hint,
            adapter=r.adapter,
            models=tuple(model_from_row(m, "catalog") for m in r.models),
            origin=origin,
        )
        for r in decoded
    )


def load_builtin_models(provider_id: str) -> tuple[Model, ...]:
    """The shipped catalog of one provider (empty when it has none)."""
    res = resources.files("providers") / "data" / "models" / f"{provider_id}.json"
    if not res.is_file():
        return ()
    rows = msgspec.json.decode(res.read_bytes(), type=list[ModelRow])
    return tuple(model_from_row(r, "catalog") for r in rows)


def load_builtin_providers() -> tuple[Provider, ...]:
    """The shipped providers: the built-in extension's rows, through the path every extension's rows take."""
    from .builtins import BUILTIN  # it reads this module's data files

    return providers_from_rows(BUILTIN.providers(), "builtin")


class Registry:
    """Every provider known to this process, built-in and custom, by id."""

    __slots__ = ("_providers",)

    def __init__(self, providers: Iterable[Provider]) -> None:
        self._providers: dict[str, Provider] = {p.id: p for p in providers}

    def get(self, provider_id: str) -> Provider | None:
        return self._providers.get(provider_id)

    def __iter__(self) -> Any:
        return iter(self._providers.values())

    def __len__(self) -> int:
        return len(self._providers)

    def ids(self) -> list[str]:
        return list(self._providers)

    def replace(self, provider: Provider) -> Registry:
        return Registry([*(p for p in self if p.id != provider.id), provider])

    def close_provider_ids(self, wrong: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(wrong, self.ids(), n=n, cutoff=0.6)
