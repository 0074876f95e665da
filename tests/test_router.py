"""Unit tests of ``proxy.router.Router``: model addressing over a hand-built :class:`Registry`."""

from __future__ import annotations

import pytest

from providers.errors import InvalidRequest, NotFound
from providers.registry import DEFAULT_COMPAT, Compat, Model, Provider, Registry, load_builtin_providers
from proxy import router as router_module
from proxy.router import Router


def _provider(pid: str, *model_ids: str, **kw: object) -> Provider:
    models = kw.pop("models", None) or tuple(Model(id=m, name=m) for m in model_ids)
    return Provider(
        id=pid,
        name=pid.title(),
        api=str(kw.pop("api", "openai-completions")),
        base_url=f"https://{pid}.example/v1",
        models=models,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def registry() -> Registry:
    return Registry(
        [
            _provider("openrouter", "anthropic/claude-sonnet-4.5", "meta-llama/llama-3.3-70b-instruct"),
            _provider("groq", "llama-3.3-70b-versatile", "openai/gpt-oss-120b", "shared-model"),
            _provider("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "shared-model"),
            _provider("cloudflare-workers-ai", "@cf/meta/llama-3.1-8b-instruct"),
            _provider("ollama", "qwen2.5-coder:7b", "llama3.1:8b"),
            _provider("nokey", "only-on-nokey", "shared-model"),
        ]
    )


def _router(registry: Registry, aliases: dict[str, str] | None = None, without: tuple[str, ...] = ("nokey",)) -> Router:
    return Router(registry, aliases or {}, lambda p: p.id not in without)


# --- provider/model -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "provider", "upstream"),
    [
        ("openrouter/anthropic/claude-sonnet-4.5", "openrouter", "anthropic/claude-sonnet-4.5"),
        (
            "cloudflare-workers-ai/@cf/meta/llama-3.1-8b-instruct",
            "cloudflare-workers-ai",
            "@cf/meta/llama-3.1-8b-instruct",
        ),
        ("ollama/qwen2.5-coder:7b", "ollama", "qwen2.5-coder:7b"),
        ("groq/openai/gpt-oss-120b", "groq", "openai/gpt-oss-120b"),
    ],
)
def test_provider_prefix_keeps_slashes_and_colons_in_the_model_id(
    registry: Registry, name: str, provider: str, upstream: str
) -> None:
    target = _router(registry).resolve(name)
    assert target.provider.id == provider
    assert target.upstream_model == upstream
    assert target.model is not None and target.model.id == upstream
    assert target.public_id == name


def test_unknown_model_of_a_known_provider_passes_through(registry: Registry) -> None:
    target = _router(registry).resolve("ollama/some-new-model:latest")
    assert target.provider.id == "ollama"
    assert target.upstream_model == "some-new-model:latest"
    assert target.model is None
    assert target.api == "openai-completions"
    assert target.compat == DEFAULT_COMPAT


def test_prefix_routing_does_not_need_credentials(registry: Registry) -> None:
    # An explicit provider is honoured even without credentials: the request then gets the 401
    # that says which env var to set, rather than a misleading 404.
    target = _router(registry).resolve("nokey/only-on-nokey")
    assert (target.provider.id, target.upstream_model) == ("nokey", "only-on-nokey")


def test_first_segment_that_is_no_provider_is_a_bare_id(registry: Registry) -> None:
    target = _router(registry).resolve("meta-llama/Llama-3.3-70B-Instruct-Turbo")
    assert target.provider.id == "together"
    assert target.upstream_model == "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert target.model is not None


def test_provider_with_empty_model_part_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound):
        _router(registry).resolve("groq/")


# --- bare ids -----------------------------------------------------------------------------------------------


def test_bare_id_with_one_owner(registry: Registry) -> None:
    target = _router(registry).resolve("llama-3.3-70b-versatile")
    assert target.provider.id == "groq"
    assert target.upstream_model == "llama-3.3-70b-versatile"
    assert target.public_id == "groq/llama-3.3-70b-versatile"


def test_bare_id_owner_without_credentials_does_not_count(registry: Registry) -> None:
    with pytest.raises(NotFound) as err:
        _router(registry).resolve("only-on-nokey")
    assert err.value.status == 404
    # ... but with credentials it is found.
    target = _router(registry, without=()).resolve("only-on-nokey")
    assert target.provider.id == "nokey"


def test_bare_id_with_several_owners_names_the_choices(registry: Registry) -> None:
    with pytest.raises(InvalidRequest) as err:
        _router(registry).resolve("shared-model")
    exc = err.value
    assert exc.status == 400
    assert exc.code == "ambiguous_model"
    assert exc.param == "model"
    assert "groq/shared-model" in exc.message and "together/shared-model" in exc.message
    # nokey lists it too but has no credentials, so it is not offered as a choice.
    assert "nokey/shared-model" not in exc.message


def test_bare_id_unknown_suggests_close_matches(registry: Registry) -> None:
    with pytest.raises(NotFound) as err:
        _router(registry).resolve("llama-3.3-70b-versatil")
    exc = err.value
    assert exc.status == 404 and exc.code == "model_not_found" and exc.param == "model"
    assert "'llama-3.3-70b-versatil'" in exc.message
    assert "did you mean 'groq/llama-3.3-70b-versatile'" in exc.message
    assert "GET /v1/models" in exc.message


def test_misspelled_provider_suggests_the_provider(registry: Registry) -> None:
    with pytest.raises(NotFound) as err:
        _router(registry).resolve("gorq/zzzzzzzzzzzzzzzzzzzz")
    assert "'groq/...'" in err.value.message


def test_not_found_without_any_credentials_says_so(registry: Registry) -> None:
    router = Router(registry, {}, lambda p: False)
    with pytest.raises(NotFound) as err:
        router.resolve("llama-3.3-70b-versatile")
    assert "no provider has credentials yet" in err.value.message


def test_empty_model_is_invalid(registry: Registry) -> None:
    with pytest.raises(InvalidRequest) as err:
        _router(registry).resolve("")
    assert err.value.param == "model" and err.value.status == 400


# --- aliases ------------------------------------------------------------------------------------------------


def test_alias_to_provider_model(registry: Registry) -> None:
    router = _router(registry, {"fast": "groq/llama-3.3-70b-versatile"})
    target = router.resolve("fast")
    assert (target.provider.id, target.upstream_model) == ("groq", "llama-3.3-70b-versatile")


def test_alias_chain_and_alias_to_bare_id(registry: Registry) -> None:
    router = _router(registry, {"a": "b", "b": "c", "c": "ollama/llama3.1:8b", "smart": "llama-3.3-70b-versatile"})
    target = router.resolve("a")
    assert (target.provider.id, target.upstream_model) == ("ollama", "llama3.1:8b")
    assert router.resolve("smart").provider.id == "groq"


@pytest.mark.parametrize("aliases", [{"a": "a"}, {"a": "b", "b": "a"}, {"a": "b", "b": "c", "c": "b"}])
def test_alias_loop_is_an_error(registry: Registry, aliases: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest) as err:
        _router(registry, aliases).resolve("a")
    assert "alias loop" in err.value.message
    assert err.value.param == "model"


def test_alias_is_suggested_when_close(registry: Registry) -> None:
    router = _router(registry, {"my-fast-model": "groq/llama-3.3-70b-versatile"})
    with pytest.raises(NotFound) as err:
        router.resolve("my-fast-modl")
    assert "'my-fast-model'" in err.value.message


# --- api and compat -----------------------------------------------------------------------------------------


def test_model_compat_merges_over_provider_compat_and_model_api_wins() -> None:
    provider_compat = DEFAULT_COMPAT.merged(Compat(max_tokens_field="max_tokens", supports_store=False))
    models = (
        Model(id="plain", name="plain"),
        Model(
            id="special",
            name="special",
            api="anthropic-messages",
            compat=Compat(supports_developer_role=False, max_tokens_field="max_completion_tokens"),
        ),
    )
    registry = Registry([_provider("mixed", models=models, compat=provider_compat)])
    router = _router(registry)

    plain = router.resolve("mixed/plain")
    assert plain.api == "openai-completions"
    assert plain.compat == provider_compat

    special = router.resolve("mixed/special")
    assert special.api == "anthropic-messages"
    assert special.compat.supports_developer_role is False  # from the model
    assert special.compat.max_tokens_field == "max_completion_tokens"  # the model overrides the provider
    assert special.compat.supports_store is False  # kept from the provider
    assert special.compat.thinking_format == "openai"  # kept from the defaults
    assert special.provider.compat == provider_compat  # the provider itself is untouched


# --- the cache ----------------------------------------------------------------------------------------------


def test_results_are_cached_and_rebuild_clears_them(registry: Registry) -> None:
    router = _router(registry)
    first = router.resolve("groq/llama-3.3-70b-versatile")
    assert router.resolve("groq/llama-3.3-70b-versatile") is first
    new = registry.replace(_provider("groq", models=(Model(id="llama-3.3-70b-versatile", name="Renamed"),)))
    router.rebuild(new)
    again = router.resolve("groq/llama-3.3-70b-versatile")
    assert again is not first
    assert again.model is not None and again.model.name == "Renamed"
    assert router.registry is new


def test_cache_is_bounded(registry: Registry) -> None:
    limit = router_module._CACHE_LIMIT
    router = _router(registry, {f"m{i}": f"ollama/model-{i}" for i in range(limit + 500)})
    for i in range(limit + 500):
        target = router.resolve(f"m{i}")
        assert target.upstream_model == f"model-{i}"
    assert 0 < len(router._cache) <= limit
    # Still correct after the oldest entries were dropped.
    assert router.resolve("m3").upstream_model == "model-3"


def test_errors_are_not_cached(registry: Registry) -> None:
    have = {"groq"}
    router = Router(registry, {}, lambda p: p.id in have)
    with pytest.raises(NotFound):
        router.resolve("only-on-nokey")
    have.add("nokey")
    assert router.resolve("only-on-nokey").provider.id == "nokey"


# --- against the shipped catalog ----------------------------------------------------------------------------


def test_builtin_registry_routes_real_ids() -> None:
    registry = Registry(load_builtin_providers())
    router = Router(registry, {}, lambda p: p.id in {"groq", "cloudflare-workers-ai", "openrouter"})
    cf = router.resolve("cloudflare-workers-ai/@cf/meta/llama-3.1-8b-instruct")
    assert cf.provider.id == "cloudflare-workers-ai"
    assert cf.upstream_model == "@cf/meta/llama-3.1-8b-instruct"
    assert cf.compat.supports_developer_role is False  # the provider's compat row
    bare = router.resolve("llama-3.3-70b-versatile")
    assert bare.provider.id == "groq"
    assert bare.model is not None and bare.model.context_window > 0
    orr = router.resolve("openrouter/anthropic/claude-sonnet-4.5")
    assert (orr.provider.id, orr.upstream_model) == ("openrouter", "anthropic/claude-sonnet-4.5")
