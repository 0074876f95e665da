"""``models.json``: custom providers as users write them, overrides of built-ins, and strict validation."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from providers.errors import ConfigError
from providers.models_json import apply_models_json, load_models_json
from providers.registry import API_NAMES, Registry, load_builtin_providers
from providers.wire import translating_wire
from tests.conftest import models_json, write_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import free_port

HELLO = [{"role": "user", "content": "hello"}]
# A wire API this build cannot speak yet: a model naming it must answer 501 even under a provider that
# speaks openai-completions (the model's api wins).
UNIMPLEMENTED_API = next((a for a in API_NAMES if a != "openai-completions" and translating_wire(a) is None), None)
GROQ_CATALOG = {m.id for m in Registry(load_builtin_providers()).get("groq").models}  # type: ignore[union-attr]


def _chat(proxy: Any, model: str, **body: Any) -> dict[str, Any]:
    resp = proxy.http().post("/v1/chat/completions", json={"model": model, "messages": HELLO, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _listed(proxy: Any) -> dict[str, dict[str, Any]]:
    resp = proxy.http().get("/v1/models")
    assert resp.status_code == 200
    return {m["id"]: m for m in resp.json()["data"]}


def _builtins() -> Registry:
    return Registry(load_builtin_providers())


# --- custom providers as users write them -------------------------------------------------------------------


def test_ollama_without_api_key_sends_no_authorization(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    models_json(
        isolated_env,
        {
            "ollama": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "models": [{"id": "qwen2.5-coder:7b", "contextWindow": 32768}, {"id": "llama3.1:8b"}],
            }
        },
    )
    proxy = start_proxy()
    out = proxy.client().chat.completions.create(model="ollama/qwen2.5-coder:7b", messages=HELLO)
    assert out.choices[0].message.content == "Echo: hello"
    sent = fake_openai.last
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "qwen2.5-coder:7b"
    assert "Authorization" not in sent.headers
    listed = _listed(proxy)
    assert listed["ollama/qwen2.5-coder:7b"]["context_window"] == 32768
    assert listed["ollama/llama3.1:8b"]["context_window"] == 128000  # the default
    assert listed["ollama/llama3.1:8b"]["source"] == "models.json"
    # A bare id that only Ollama lists routes there too.
    _chat(proxy, "llama3.1:8b")
    assert fake_openai.last.body["model"] == "llama3.1:8b"


def test_lm_studio_with_literal_key(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any) -> None:
    models_json(
        isolated_env,
        {
            "lmstudio": {
                "name": "LM Studio",
                "baseUrl": fake_openai.url + "/v1/",
                "api": "openai-completions",
                "apiKey": "lm-studio",
                "models": [{"id": "qwen/qwen3-coder-30b", "name": "Qwen3 Coder 30B", "contextWindow": 262144}],
            }
        },
    )
    proxy = start_proxy()
    _chat(proxy, "lmstudio/qwen/qwen3-coder-30b")
    assert fake_openai.last.path == "/v1/chat/completions"  # the trailing slash is not doubled
    assert fake_openai.last.headers["Authorization"] == "Bearer lm-studio"
    assert fake_openai.last.body["model"] == "qwen/qwen3-coder-30b"
    entry = _listed(proxy)["lmstudio/qwen/qwen3-coder-30b"]
    assert (entry["name"], entry["context_window"], entry["owned_by"]) == ("Qwen3 Coder 30B", 262144, "lmstudio")


def _vllm(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {
        "vllm": {
            "baseUrl": fake.url + "/v1",
            "api": "openai-completions",
            "models": [{"id": "meta-llama/Llama-3.1-8B-Instruct"}],
            **extra,
        }
    }


def test_vllm_with_env_key_custom_headers_and_auth_header(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "vllm-secret-key")
    monkeypatch.setenv("TENANT", "team-a")
    models_json(
        isolated_env,
        _vllm(
            fake_openai,
            apiKey="$VLLM_API_KEY",
            authHeader=True,
            headers={"X-Tenant": "$TENANT", "X-Trace": "trace-${TENANT}-1", "X-Static": "fixed"},
        ),
    )
    _chat(start_proxy(), "vllm/meta-llama/Llama-3.1-8B-Instruct")
    sent = fake_openai.last.headers
    assert sent["Authorization"] == "Bearer vllm-secret-key"
    assert sent["X-Tenant"] == "team-a"
    assert sent["X-Trace"] == "trace-team-a-1"
    assert sent["X-Static"] == "fixed"


def test_auth_header_without_api_key_is_an_error(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any) -> None:
    models_json(isolated_env, _vllm(fake_openai, authHeader=True))
    proxy = start_proxy()
    resp = proxy.http().post(
        "/v1/chat/completions", json={"model": "vllm/meta-llama/Llama-3.1-8B-Instruct", "messages": HELLO}
    )
    assert resp.status_code == 401
    message = resp.json()["error"]["message"]
    assert "providers.vllm.apiKey" in message and "$SWITCHBOARD_HOME/models.json" in message
    assert fake_openai.requests == []
    assert not any(i.startswith("vllm/") for i in _listed(proxy))


def test_header_with_unset_variable_is_an_error(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any) -> None:
    models_json(isolated_env, _vllm(fake_openai, apiKey="k", headers={"X-Tenant": "$UNSET_TENANT"}))
    resp = (
        start_proxy()
        .http()
        .post("/v1/chat/completions", json={"model": "vllm/meta-llama/Llama-3.1-8B-Instruct", "messages": HELLO})
    )
    assert resp.status_code == 401
    message = resp.json()["error"]["message"]
    assert "X-Tenant" in message and "models.json" in message
    assert fake_openai.requests == []


def test_api_key_with_unset_variable_says_it_did_not_resolve(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    models_json(isolated_env, _vllm(fake_openai, apiKey="$UNSET_VLLM_KEY"))
    resp = (
        start_proxy()
        .http()
        .post("/v1/chat/completions", json={"model": "vllm/meta-llama/Llama-3.1-8B-Instruct", "messages": HELLO})
    )
    assert resp.status_code == 401
    message = resp.json()["error"]["message"]
    assert "providers.vllm" in message and "did not resolve" in message


# --- provider-level vs model-level api and baseUrl ----------------------------------------------------------


def test_model_level_api_and_base_url_override_the_provider(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    models_json(
        isolated_env,
        {
            "mixed": {
                "baseUrl": fake_openai.url + "/main/v1",
                "api": "openai-completions",
                "apiKey": "k",
                "models": [
                    {"id": "plain"},
                    {"id": "elsewhere", "baseUrl": fake_openai.url + "/other/v1"},
                ],
            },
            "per-model-only": {
                "baseUrl": fake_openai.url + "/pm/v1",
                "apiKey": "k",
                "models": [{"id": "m1", "api": "openai-completions"}],
            },
        },
    )
    proxy = start_proxy()
    _chat(proxy, "mixed/plain")
    assert fake_openai.last.path == "/main/v1/chat/completions"
    _chat(proxy, "mixed/elsewhere")
    assert fake_openai.last.path == "/other/v1/chat/completions"
    _chat(proxy, "per-model-only/m1")
    assert fake_openai.last.path == "/pm/v1/chat/completions"

    listed = _listed(proxy)
    assert listed["mixed/plain"]["api"] == "openai-completions"
    assert listed["per-model-only/m1"]["api"] == "openai-completions"


@pytest.mark.skipif(UNIMPLEMENTED_API is None, reason="every wire API is implemented")
def test_model_level_api_that_is_not_implemented_answers_501(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    assert UNIMPLEMENTED_API is not None
    models_json(
        isolated_env,
        {
            "mixed": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "apiKey": "k",
                "models": [{"id": "plain"}, {"id": "other-api", "api": UNIMPLEMENTED_API}],
            }
        },
    )
    proxy = start_proxy()
    resp = proxy.http().post("/v1/chat/completions", json={"model": "mixed/other-api", "messages": HELLO})
    assert resp.status_code == 501
    assert UNIMPLEMENTED_API in resp.json()["error"]["message"]
    assert fake_openai.requests == []
    listed = _listed(proxy)
    assert listed["mixed/other-api"]["api"] == UNIMPLEMENTED_API
    assert listed["mixed/plain"]["api"] == "openai-completions"


# --- overrides of built-in providers ------------------------------------------------------------------------


def test_builtin_override_with_base_url_and_headers_keeps_catalog_and_env_auth(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_json(isolated_env, {"groq": {"baseUrl": fake_openai.url + "/groq/v1", "headers": {"X-Proxy-Team": "ml"}}})
    monkeypatch.setenv("GROQ_API_KEY", "gsk-env")
    proxy = start_proxy()
    groq_ids = {i.removeprefix("groq/") for i in _listed(proxy) if i.startswith("groq/")}
    assert groq_ids == GROQ_CATALOG and len(groq_ids) > 3
    assert all(m["source"] == "catalog" for i, m in _listed(proxy).items() if i.startswith("groq/"))

    _chat(proxy, "groq/llama-3.3-70b-versatile", max_completion_tokens=20)
    sent = fake_openai.last
    assert sent.path == "/groq/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer gsk-env"
    assert sent.headers["X-Proxy-Team"] == "ml"
    # The built-in compat (Groq wants max_tokens) is kept.
    assert sent.body["max_tokens"] == 20 and "max_completion_tokens" not in sent.body


def test_builtin_override_without_env_key_is_not_listed(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    models_json(isolated_env, {"groq": {"baseUrl": fake_openai.url + "/v1"}})
    assert not any(i.startswith("groq/") for i in _listed(start_proxy()))


def test_models_entries_upsert_builtin_models_by_id(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-env")
    models_json(
        isolated_env,
        {
            "groq": {
                "baseUrl": fake_openai.url + "/v1",
                "models": [
                    {"id": "llama-3.3-70b-versatile", "name": "My Llama", "contextWindow": 1000, "maxTokens": 77},
                    {"id": "brand-new-model", "reasoning": True},
                ],
            }
        },
    )
    listed = _listed(start_proxy())
    groq = [i for i in listed if i.startswith("groq/")]
    assert len(groq) == len(set(groq)) == len(GROQ_CATALOG) + 1
    replaced = listed["groq/llama-3.3-70b-versatile"]
    assert (replaced["name"], replaced["context_window"], replaced["max_tokens"]) == ("My Llama", 1000, 77)
    assert replaced["source"] == "models.json"
    assert listed["groq/brand-new-model"]["reasoning"] is True
    other = next(i for i in groq if i not in ("groq/llama-3.3-70b-versatile", "groq/brand-new-model"))
    assert listed[other]["source"] == "catalog"


def test_model_overrides_patch_fields_and_ignore_unknown_ids(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = _builtins().get("groq")
    assert base is not None
    original = base.model("llama-3.3-70b-versatile")
    assert original is not None
    path = write_json(
        tmp_path / "models.json",
        {
            "providers": {
                "groq": {
                    "modelOverrides": {
                        "llama-3.3-70b-versatile": {
                            "name": "Llama (patched)",
                            "contextWindow": 99999,
                            "cost": {"input": 9.5},
                            "compat": {"supportsDeveloperRole": False},
                        },
                        "no-such-model": {"name": "ghost"},
                    }
                }
            }
        },
    )
    with caplog.at_level(logging.WARNING, logger="providers.models_json"):
        registry = apply_models_json(_builtins(), path)
    groq = registry.get("groq")
    assert groq is not None
    patched = groq.model("llama-3.3-70b-versatile")
    assert patched is not None
    assert patched.name == "Llama (patched)"
    assert patched.context_window == 99999
    assert patched.cost.input == 9.5
    assert patched.cost.output == original.cost.output  # the rest of the cost is kept
    assert patched.cost.cache_read == original.cost.cache_read
    assert patched.max_tokens == original.max_tokens
    assert patched.compat is not None and patched.compat.supports_developer_role is False
    assert groq.model("no-such-model") is None
    assert {m.id for m in groq.models} == GROQ_CATALOG
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no-such-model" in w and str(path) in w for w in warnings)
    # Other models and the provider itself are untouched.
    assert groq.base_url == base.base_url and groq.env_vars == base.env_vars


# --- compat -------------------------------------------------------------------------------------------------


def test_provider_and_model_compat_shape_the_outgoing_body(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    models_json(
        isolated_env,
        {
            "local": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "compat": {"maxTokensField": "max_tokens"},
                "models": [
                    {"id": "default"},
                    {"id": "old-template", "compat": {"supportsDeveloperRole": False}},
                    {"id": "modern", "compat": {"maxTokensField": "max_completion_tokens"}},
                ],
            }
        },
    )
    proxy = start_proxy()
    messages = [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"}]

    def sent(model: str) -> dict[str, Any]:
        resp = proxy.http().post(
            "/v1/chat/completions", json={"model": model, "messages": messages, "max_completion_tokens": 33}
        )
        assert resp.status_code == 200, resp.text
        return dict(fake_openai.last.body)

    body = sent("local/default")
    assert body["max_tokens"] == 33 and "max_completion_tokens" not in body
    assert body["messages"][0]["role"] == "developer"

    body = sent("local/old-template")
    assert body["max_tokens"] == 33 and "max_completion_tokens" not in body  # provider compat still applies
    assert body["messages"][0] == {"role": "system", "content": "be brief"}

    body = sent("local/modern")
    assert body["max_completion_tokens"] == 33 and "max_tokens" not in body
    assert body["messages"][0]["role"] == "developer"


def test_builtin_provider_compat_override_merges_with_builtin_compat(tmp_path: Path) -> None:
    path = write_json(tmp_path / "models.json", {"providers": {"groq": {"compat": {"supportsDeveloperRole": False}}}})
    groq = apply_models_json(_builtins(), path).get("groq")
    assert groq is not None
    assert groq.compat.supports_developer_role is False
    assert groq.compat.max_tokens_field == "max_tokens"  # from the built-in row


def test_builtin_base_url_override_applies_to_every_catalog_model(tmp_path: Path) -> None:
    """Routing a provider through a proxy must not leave models with their own baseUrl going direct."""
    path = write_json(tmp_path / "models.json", {"providers": {"opencode": {"baseUrl": "https://proxy.corp/zen/v1"}}})
    base = _builtins().get("opencode")
    assert base is not None and any(m.base_url for m in base.models)  # the catalog has per-model URLs
    opencode = apply_models_json(_builtins(), path).get("opencode")
    assert opencode is not None
    assert opencode.base_url == "https://proxy.corp/zen/v1"
    assert [m.id for m in opencode.models if m.base_url] == []
    assert {m.id for m in opencode.models} == {m.id for m in base.models}


# --- invalid files ------------------------------------------------------------------------------------------


def _ollama(**extra: Any) -> dict[str, Any]:
    return {"baseUrl": "http://localhost:11434/v1", "api": "openai-completions", **extra}


INVALID: list[tuple[str, Any, list[str]]] = [
    (
        "unknown-provider-key",
        {"providers": {"ollama": _ollama(apikey="x")}},
        ["providers.ollama", "unknown field", "apikey"],
    ),
    (
        "unknown-model-key",
        {"providers": {"ollama": _ollama(models=[{"id": "m", "context": 1}])}},
        ["providers.ollama.models[0]", "unknown field", "context"],
    ),
    (
        "context-window-string",
        {"providers": {"ollama": _ollama(models=[{"id": "m", "contextWindow": "128k"}])}},
        ["providers.ollama.models[0].contextWindow", "Expected `int`", "got `str`"],
    ),
    (
        "bad-provider-api",
        {"providers": {"ollama": _ollama(api="openai-chat")}},
        ["providers.ollama.api", "'openai-chat'", "expected one of", "openai-completions"],
    ),
    (
        "bad-model-api",
        {"providers": {"ollama": _ollama(models=[{"id": "a"}, {"id": "b", "api": "ollama"}])}},
        ["providers.ollama.models[1].api", "expected one of", "openai-completions"],
    ),
    (
        "bad-compat-value",
        {"providers": {"ollama": _ollama(compat={"maxTokensField": "max_output_tokens"})}},
        ["providers.ollama.compat.maxTokensField", "max_output_tokens"],
    ),
    (
        "override-cost-unknown-field",
        {"providers": {"groq": {"modelOverrides": {"llama-3.3-70b-versatile": {"cost": {"inptu": 1}}}}}},
        ["providers.groq.modelOverrides.llama-3.3-70b-versatile.cost", "inptu"],
    ),
    (
        "override-wrong-type",
        {"providers": {"groq": {"modelOverrides": {"llama-3.3-70b-versatile": {"contextWindow": "big"}}}}},
        ["providers.groq.modelOverrides.llama-3.3-70b-versatile.contextWindow", "Expected `int"],
    ),
    ("providers-not-object", {"providers": ["ollama"]}, ["'providers'", "must be an object"]),
    ("provider-not-object", {"providers": {"ollama": "http://x"}}, ["providers.ollama", "Expected `object`"]),
    ("unknown-top-level", {"provider": {}}, ["unknown top-level key 'provider'", "expected only 'providers'"]),
    ("top-level-array", [], ["expected", "providers"]),
]


@pytest.mark.parametrize(("content", "expected"), [(c, e) for _, c, e in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_models_json_names_file_key_path_and_expectation(
    tmp_path: Path, content: Any, expected: list[str]
) -> None:
    path = write_json(tmp_path / "models.json", content)
    with pytest.raises(ConfigError) as err:
        apply_models_json(_builtins(), path)
    message = err.value.message
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message, (part, message)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text('{"providers": {"ollama": {"baseUrl": "x",}}}')
    with pytest.raises(ConfigError) as err:
        load_models_json(path)
    assert str(path) in err.value.message
    assert "not valid JSON" in err.value.message
    assert '{"providers": {...}}' in err.value.message


def test_load_models_json_validates_without_a_registry(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "models.json", {"providers": {"ollama": _ollama(models=[{"id": "m", "maxTokens": "x"}])}}
    )
    with pytest.raises(ConfigError) as err:
        load_models_json(path)
    assert "providers.ollama.models[0].maxTokens" in err.value.message
    assert load_models_json(tmp_path / "absent.json") == {}
    ok = write_json(tmp_path / "ok.json", {"providers": {"ollama": _ollama(models=[{"id": "m"}])}})
    parsed = load_models_json(ok)
    assert parsed["ollama"].models[0].id == "m" and parsed["ollama"].api == "openai-completions"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"baseUrl": "http://localhost:11434/v1", "models": [{"id": "m"}]},
            ["providers.ollama.api", "required", "openai-completions"],
        ),
        ({"api": "openai-completions", "models": [{"id": "m"}]}, ["providers.ollama.baseUrl", "required"]),
        ({"api": "openai-completions"}, ["providers.ollama.baseUrl", "required"]),
        (
            {"api": "openai-completions", "models": [{"id": "a", "baseUrl": "http://x/v1"}, {"id": "b"}]},
            ["providers.ollama.baseUrl", "required"],
        ),
        (
            {"baseUrl": "http://x/v1", "models": [{"id": "a", "api": "openai-completions"}, {"id": "b"}]},
            ["providers.ollama.api", "required"],
        ),
    ],
    ids=["no-api", "no-base-url", "no-base-url-no-models", "base-url-on-some-models", "api-on-some-models"],
)
def test_custom_provider_needs_base_url_and_api(tmp_path: Path, config: dict[str, Any], expected: list[str]) -> None:
    path = write_json(tmp_path / "models.json", {"providers": {"ollama": config}})
    with pytest.raises(ConfigError) as err:
        apply_models_json(_builtins(), path)
    assert err.value.message.startswith(str(path))
    for part in expected:
        assert part in err.value.message


def test_custom_provider_with_everything_per_model_is_valid(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "models.json",
        {"providers": {"split": {"models": [{"id": "a", "api": "openai-completions", "baseUrl": "http://h/v1"}]}}},
    )
    split = apply_models_json(_builtins(), path).get("split")
    assert split is not None and split.origin == "models.json"
    assert split.models[0].base_url == "http://h/v1"


# --- switchboard serve refuses to start ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            {"providers": {"ollama": _ollama(models=[{"id": "m", "contextWindow": "128k"}])}},
            "providers.ollama.models[0].contextWindow",
        ),
        ({"providers": {"ollama": {"api": "openai-completions", "models": [{"id": "m"}]}}}, "providers.ollama.baseUrl"),
        ("{not json", "not valid JSON"),
    ],
    ids=["wrong-type", "missing-base-url", "invalid-json"],
)
def test_serve_refuses_to_start_with_invalid_models_json(
    isolated_env: Path, tmp_path: Path, content: Any, expected: str
) -> None:
    path = isolated_env / "models.json"
    if isinstance(content, str):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    else:
        write_json(path, content)
    exe = Path(sys.executable).with_name("switchboard")
    env = {**os.environ, "SWITCHBOARD_HOME": str(isolated_env)}
    proc = subprocess.run(
        [str(exe), "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr


def test_valid_file_round_trips_json(tmp_path: Path) -> None:
    # The docs' Ollama example, verbatim shape.
    doc = {
        "providers": {
            "ollama": {
                "baseUrl": "http://localhost:11434/v1",
                "api": "openai-completions",
                "apiKey": "ollama",
                "models": [{"id": "llama3.1:8b"}, {"id": "qwen2.5-coder:7b"}],
            }
        }
    }
    path = tmp_path / "models.json"
    path.write_text(json.dumps(doc))
    ollama = apply_models_json(_builtins(), path).get("ollama")
    assert ollama is not None
    assert ollama.config_api_key == "ollama"
    assert [m.id for m in ollama.models] == ["llama3.1:8b", "qwen2.5-coder:7b"]
    assert ollama.base_url == "http://localhost:11434/v1"
