"""The shipped model catalog: ``providers/data/models/<provider-id>.json``.

Checks the data files themselves (shape, ordering, plausibility) and that every one loads through
:func:`providers.registry.load_builtin_models`, plus a few spot checks of well-known facts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from providers.registry import API_NAMES, Model, load_builtin_models, load_builtin_providers

DATA = Path(__file__).resolve().parent.parent / "providers" / "data"
MODELS_DIR = DATA / "models"

PROVIDER_IDS: list[str] = [row["id"] for row in json.loads((DATA / "providers.json").read_text())]

#: Providers allowed to ship without a catalog file (discovery or models.json fills them in).
#: Keep this small; today every built-in provider has one.
ALLOWED_WITHOUT_CATALOG: frozenset[str] = frozenset()

#: Providers whose file may be an empty list (no discoverable data at the time of writing).
ALLOWED_EMPTY: frozenset[str] = frozenset()

#: (provider, model) pairs whose source lists maxTokens above contextWindow; kept as published.
MAX_TOKENS_ABOVE_CONTEXT: frozenset[tuple[str, str]] = frozenset(
    {("huggingface", "thinkingmachines/Inkling-Small")},
)

#: Sanity ceilings: nothing real is above these, so a bigger number is a transcription slip.
MAX_CONTEXT = 20_000_000
MAX_PRICE = 1_000.0

_ROW_KEYS = {"id", "name", "contextWindow", "maxTokens", "cost", "reasoning", "input"}
_OPTIONAL_KEYS = {"api", "baseUrl", "kind"}
_COST_KEYS = {"input", "output", "cacheRead", "cacheWrite"}


def _catalog_files() -> list[Path]:
    return sorted(MODELS_DIR.glob("*.json"))


def _rows(provider_id: str) -> list[dict[str, Any]]:
    rows = json.loads((MODELS_DIR / f"{provider_id}.json").read_text(encoding="utf-8"))
    assert isinstance(rows, list)
    return rows


def _catalog_ids() -> list[str]:
    return [p.stem for p in _catalog_files()]


def _models(provider_id: str) -> tuple[Model, ...]:
    return load_builtin_models(provider_id)


def _find(provider_id: str, model_id: str) -> Model:
    for m in _models(provider_id):
        if m.id == model_id:
            return m
    raise AssertionError(f"{provider_id} has no model {model_id!r}")


# --- coverage ----------------------------------------------------------------------------------


def test_provider_ids_are_unique() -> None:
    assert len(PROVIDER_IDS) == len(set(PROVIDER_IDS))


def test_every_provider_has_a_catalog_or_is_allowed_not_to() -> None:
    missing = {pid for pid in PROVIDER_IDS if not (MODELS_DIR / f"{pid}.json").is_file()}
    assert missing <= ALLOWED_WITHOUT_CATALOG, f"no catalog file for {sorted(missing - ALLOWED_WITHOUT_CATALOG)}"


def test_no_catalog_for_an_unknown_provider() -> None:
    stray = set(_catalog_ids()) - set(PROVIDER_IDS)
    assert not stray, f"catalog files without a provider row: {sorted(stray)}"


def test_allow_lists_name_real_providers() -> None:
    assert set(ALLOWED_WITHOUT_CATALOG) <= set(PROVIDER_IDS)
    assert set(ALLOWED_EMPTY) <= set(PROVIDER_IDS)
    assert {pid for pid, _ in MAX_TOKENS_ABOVE_CONTEXT} <= set(PROVIDER_IDS)


# --- file format -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider_id", _catalog_ids())
def test_file_is_canonical_json(provider_id: str) -> None:
    """2-space indent, trailing newline, rows sorted by id: the files are diff-friendly and regenerable."""
    path = MODELS_DIR / f"{provider_id}.json"
    text = path.read_text(encoding="utf-8")
    rows = json.loads(text)
    assert text == json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids), "rows must be sorted by id"


@pytest.mark.parametrize("provider_id", _catalog_ids())
def test_rows_have_the_documented_fields(provider_id: str) -> None:
    for row in _rows(provider_id):
        keys = set(row)
        assert keys >= _ROW_KEYS, (row.get("id"), _ROW_KEYS - keys)
        assert keys <= _ROW_KEYS | _OPTIONAL_KEYS, (row["id"], keys - _ROW_KEYS - _OPTIONAL_KEYS)
        assert set(row["cost"]) == _COST_KEYS, row["id"]
        assert isinstance(row["id"], str) and row["id"] == row["id"].strip() and row["id"]
        assert isinstance(row["name"], str) and row["name"].strip()
        assert isinstance(row["reasoning"], bool)
        assert row["input"] in (["text"], ["text", "image"]), row["id"]
        assert isinstance(row["contextWindow"], int) and isinstance(row["maxTokens"], int)


@pytest.mark.parametrize("provider_id", _catalog_ids())
def test_file_loads_through_the_registry(provider_id: str) -> None:
    models = load_builtin_models(provider_id)
    assert len(models) == len(_rows(provider_id))
    assert all(m.source == "catalog" for m in models)
    if provider_id not in ALLOWED_EMPTY:
        assert models, f"{provider_id}.json is empty"


def test_builtin_providers_carry_their_catalogs() -> None:
    providers = {p.id: p for p in load_builtin_providers()}
    assert set(providers) == set(PROVIDER_IDS)
    for pid, provider in providers.items():
        assert provider.models == load_builtin_models(pid)


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider_id", _catalog_ids())
def test_model_ids_unique_per_provider(provider_id: str) -> None:
    ids = [m.id for m in _models(provider_id)]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, dupes


@pytest.mark.parametrize("provider_id", _catalog_ids())
def test_token_limits_are_plausible(provider_id: str) -> None:
    for m in _models(provider_id):
        assert 0 < m.context_window <= MAX_CONTEXT, m.id
        assert 0 < m.max_tokens <= MAX_CONTEXT, m.id
        if (provider_id, m.id) not in MAX_TOKENS_ABOVE_CONTEXT:
            assert m.max_tokens <= m.context_window, (m.id, m.max_tokens, m.context_window)


def test_max_tokens_exceptions_are_still_exceptions() -> None:
    """An allow-listed pair that no longer needs the exception should leave the list."""
    for pid, mid in MAX_TOKENS_ABOVE_CONTEXT:
        m = _find(pid, mid)
        assert m.max_tokens > m.context_window


@pytest.mark.parametrize("provider_id", _catalog_ids())
def test_costs_are_non_negative_and_finite(provider_id: str) -> None:
    for m in _models(provider_id):
        for field, value in (
            ("input", m.cost.input),
            ("output", m.cost.output),
            ("cacheRead", m.cost.cache_read),
            ("cacheWrite", m.cost.cache_write),
        ):
            assert math.isfinite(value) and 0 <= value <= MAX_PRICE, (m.id, field, value)


@pytest.mark.parametrize("provider_id", _catalog_ids())
def test_api_override_is_a_known_wire_api(provider_id: str) -> None:
    provider_api = next(p.api for p in load_builtin_providers() if p.id == provider_id)
    for m in _models(provider_id):
        if m.api is not None:
            assert m.api in API_NAMES, (m.id, m.api)
            assert m.api != provider_api, f"{m.id}: 'api' repeats the provider's own API"


@pytest.mark.parametrize("provider_id", _catalog_ids())
def test_base_url_override_is_an_https_url(provider_id: str) -> None:
    provider_url = next(p.base_url for p in load_builtin_providers() if p.id == provider_id)
    for m in _models(provider_id):
        if m.base_url is not None:
            assert m.base_url.startswith("https://"), (m.id, m.base_url)
            assert not m.base_url.endswith("/"), (m.id, m.base_url)
            assert m.base_url != provider_url, f"{m.id}: 'baseUrl' repeats the provider's own base URL"


# --- spot checks of well-known facts -------------------------------------------------------------


def test_openai_has_gpt_4o_with_image_input() -> None:
    m = _find("openai", "gpt-4o")
    assert "image" in m.input
    assert m.reasoning is False
    assert m.context_window == 128_000
    assert (m.cost.input, m.cost.output) == (2.5, 10.0)


def test_openai_gpt_4_1_has_a_million_token_window() -> None:
    m = _find("openai", "gpt-4.1")
    assert m.context_window == 1_047_576
    assert m.max_tokens == 32_768
    assert (m.cost.input, m.cost.output, m.cost.cache_read) == (2.0, 8.0, 0.5)


def test_openai_o_series_reasons() -> None:
    assert _find("openai", "o3").reasoning is True
    assert _find("openai", "o4-mini").reasoning is True


def test_openai_responses_only_models_are_marked() -> None:
    for mid in ("o1-pro", "o3-pro", "gpt-5-pro"):
        assert _find("openai", mid).api == "openai-responses"
    assert _find("openai", "gpt-4o").api is None


def test_anthropic_has_a_reasoning_sonnet_with_vision() -> None:
    sonnets = [m for m in _models("anthropic") if "sonnet" in m.id]
    assert sonnets
    assert any(m.reasoning and "image" in m.input for m in sonnets)
    m = _find("anthropic", "claude-sonnet-4-5-20250929")
    assert m.reasoning is True
    assert (m.cost.input, m.cost.output, m.cost.cache_read, m.cost.cache_write) == (3.0, 15.0, 0.3, 3.75)


def test_anthropic_prices_cache_writes() -> None:
    assert all(m.cost.cache_write > 0 for m in _models("anthropic"))


def test_google_gemini_2_5_pro() -> None:
    m = _find("google", "gemini-2.5-pro")
    assert m.reasoning is True
    assert "image" in m.input
    assert m.context_window == 1_048_576
    assert (m.cost.input, m.cost.output) == (1.25, 10.0)


def test_openai_codex_models_fit_the_subscription_window() -> None:
    models = _models("openai-codex")
    assert models
    assert all(m.max_tokens == 128_000 and m.reasoning for m in models)
    assert all(m.context_window >= 128_000 for m in models)


def test_azure_clones_openai_model_ids() -> None:
    openai_ids = {m.id for m in _models("openai")}
    azure_ids = {m.id for m in _models("azure-openai-responses")}
    assert {"gpt-4o", "gpt-4.1", "o3", "o4-mini"} <= openai_ids & azure_ids


def test_bedrock_regional_profiles() -> None:
    eu = [m for m in _models("amazon-bedrock") if m.id.startswith("eu.")]
    assert eu and all(m.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com" for m in eu)
    assert all(m.base_url is None for m in _models("amazon-bedrock") if not m.id.startswith("eu."))


def test_opencode_routes_claude_through_the_anthropic_endpoint() -> None:
    claude = [m for m in _models("opencode") if m.id.startswith("claude-")]
    assert claude
    assert all(m.api == "anthropic-messages" and m.base_url == "https://opencode.ai/zen" for m in claude)


def test_cloudflare_gateway_ids_and_endpoints() -> None:
    models = _models("cloudflare-ai-gateway")
    workers = [m for m in models if m.id.startswith("workers-ai/@cf/")]
    assert workers
    assert all(m.api == "openai-completions" and (m.base_url or "").endswith("/compat") for m in workers)
    assert all(m.base_url and "{CLOUDFLARE_ACCOUNT_ID}" in m.base_url for m in models)


def test_workers_ai_ids_are_cf_ids() -> None:
    assert all(m.id.startswith("@cf/") for m in _models("cloudflare-workers-ai"))


def test_gateways_use_vendor_prefixed_ids() -> None:
    for pid in ("openrouter", "vercel-ai-gateway"):
        models = _models(pid)
        assert 30 <= len(models) <= 60, (pid, len(models))
        assert all("/" in m.id for m in models), pid
