"""Routing's configuration: checked at start with the key path in the message (also through
``switchboard serve``); routes listed as models; provider instances (``"extends"`` in models.json) as
separate targets, each with its own key, URL and, for Bedrock, its own region and endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.errors import ConfigError
from proxy.config import Paths, load_server_config
from proxy.runtime import Runtime
from tests.conftest import Proxy, auth_json, models_json
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.server import Action
from tests.test_routing_support import TimedOpenAI, config, fakes, providers, write_config

ROOT = Path(__file__).resolve().parent.parent
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
#: Bedrock's throttling answer: an HTTP 429 with its error type.
THROTTLED = Action(
    "error",
    status=429,
    body={"message": "Too many requests, please wait before trying again."},
    headers={"x-amzn-errortype": "ThrottlingException"},
)


@pytest.fixture
def ups() -> Iterator[list[TimedOpenAI]]:
    yield from fakes(2)


def _refused(home: Path, settings: dict[str, Any]) -> str:
    write_config(home, settings)
    paths = Paths.from_env()
    with pytest.raises(ConfigError) as err:
        Runtime(paths, load_server_config(paths.config_json))
    return err.value.message


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ({"targets": ["openai/gpt-4o", "anthropc/claude-x"]},
         "routes.smart.targets[1]: unknown provider 'anthropc'; did you mean 'anthropic'?"),
        ({"targets": ["openai/gpt-4oo"]},
         "routes.smart.targets[0]: unknown model 'gpt-4oo' of provider 'openai'; did you mean"),
        ({"targets": ["gpt-4o"]}, "routes.smart.targets[0]: 'gpt-4o' names no provider"),
        ({"targets": ["openai/gpt-4o", "openai/gpt-4o"]}, "routes.smart.targets[1]: 'openai/gpt-4o' is listed twice"),
        ({"targets": ["openai/gpt-4o", "groq/llama-3.3-70b-versatile"], "strategy": "weighted", "weights": [1]},
         "routes.smart.weights: strategy 'weighted' needs one weight per target (2), got 1"),
        ({"targets": ["openai/gpt-4o"], "strategy": "weighted", "weights": [0]}, "routes.smart.weights[0]: 0"),
        ({"targets": ["openai/gpt-4o"], "weights": [1]}, "routes.smart.weights: only strategy 'weighted' uses weights"),
        ({"targets": ["smart"]}, "routes.smart.targets[0]: 'smart' is a route; routes do not nest"),
        ({"targets": ["openai/gpt-4o", "openai/text-embedding-3-small"]},
         "routes.smart.targets: mixes chat and embedding"),
    ],
)  # fmt: skip
def test_a_route_that_cannot_work_stops_the_start_naming_its_key_path(
    isolated_env: Path, route: dict[str, Any], expected: str
) -> None:
    message = _refused(isolated_env, {"routes": {"smart": route}})
    assert message.startswith(str(isolated_env / "config.json")), message
    assert expected in message, message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"routes": {"smart": {"targets": []}}}, "config.routes.smart.targets"),
        ({"routes": {"smart": {"targets": ["openai/gpt-4o"], "strategy": "fastest"}}}, "config.routes.smart.strategy"),
        ({"routes": {"smart": {"targets": ["openai/gpt-4o"], "retries": 2}}}, "config.routes.smart"),
        ({"retries": {"attempts": 0}}, "config.retries.attempts"),
        ({"cooldown": {"seconds": -1}}, "config.cooldown.seconds"),
    ],
)
def test_malformed_routing_settings_name_the_key(isolated_env: Path, settings: dict[str, Any], expected: str) -> None:
    write_config(isolated_env, settings)
    with pytest.raises(ConfigError) as err:
        load_server_config(Paths.from_env().config_json)
    assert expected in err.value.message, err.value.message


def test_a_route_named_like_an_alias_is_refused(isolated_env: Path) -> None:
    settings = {"aliases": {"smart": "openai/gpt-4o"}, "routes": {"smart": {"targets": ["openai/gpt-4o"]}}}
    assert "routes.smart: 'smart' is also an alias" in _refused(isolated_env, settings)


def test_switchboard_serve_refuses_to_start_with_a_bad_route(isolated_env: Path) -> None:
    write_config(isolated_env, {"routes": {"smart": {"targets": ["anthropc/claude-sonnet-4-5"]}}})
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--port", "0"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "routes.smart.targets[0]: unknown provider 'anthropc'; did you mean 'anthropic'?" in out.stderr


def test_a_route_is_a_model_with_what_all_its_targets_can_do(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    sizes = {
        "p0": [{"id": "m", "contextWindow": 64000, "maxTokens": 8000, "input": ["text", "image"], "reasoning": True}],
        "p1": [{"id": "m", "contextWindow": 32000, "maxTokens": 16000, "input": ["text"], "reasoning": True}],
    }
    providers(isolated_env, {"p0": ups[0], "p1": ups[1]}, sizes)
    proxy = start_proxy(config=config(routes={"r": {"targets": ["p0/m", "p1/m"], "strategy": "least-busy"}}))
    http = proxy.http()
    [entry] = [e for e in http.get("/v1/models").json()["data"] if e["id"] == "r"]
    assert entry["owned_by"] == "switchboard"
    assert entry["route"] == {"strategy": "least-busy", "targets": ["p0/m", "p1/m"]}
    assert (entry["context_window"], entry["max_tokens"], entry["input"], entry["reasoning"]) == (
        32000, 8000, ["text"], True,
    )  # fmt: skip
    assert http.get("/v1/models/r").json() == entry


def test_two_instances_of_an_openai_compatible_provider_use_their_own_keys(
    isolated_env: Path, start_proxy: Callable[..., Proxy], ups: list[TimedOpenAI]
) -> None:
    a, b = ups
    models_json(
        isolated_env,
        {
            "org-a": {"extends": "openai", "baseUrl": a.url + "/v1", "apiKey": "sk-org-a"},
            "org-b": {"extends": "openai", "baseUrl": b.url + "/v1", "apiKey": "$ORG_B_KEY"},
        },
    )
    os.environ["ORG_B_KEY"] = "sk-org-b"
    try:
        route = {"targets": ["org-a/gpt-4o", "org-b/gpt-4o"], "strategy": "weighted", "weights": [1, 1]}
        client = start_proxy(config=config(routes={"r": route})).client()
        for _ in range(30):
            client.chat.completions.create(model="r", messages=MESSAGES)
    finally:
        del os.environ["ORG_B_KEY"]
    assert a.requests and b.requests
    assert set(a.keys) == {"sk-org-a"} and set(b.keys) == {"sk-org-b"}
    # An instance keeps its parent's API and models: the catalog's gpt-4o, sent as OpenAI's own id.
    assert {r.body["model"] for r in a.requests + b.requests} == {"gpt-4o"}


def test_two_bedrock_regions_are_separate_targets(
    isolated_env: Path, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = {"AKIDSTATIC0000000XYZ": ("static-secret", None)}
    us, eu = FakeBedrock(creds).start(), FakeBedrock(creds).start()
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTATIC0000000XYZ")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "static-secret")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", us.url)
        models_json(isolated_env, {"bedrock-eu": {"extends": "amazon-bedrock"}})
        # The instance's region and endpoint: its own auth.json entry's env, over the process's.
        auth_json(
            isolated_env,
            {"bedrock-eu": {"env": {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": eu.url}}},
        )
        claude = "anthropic.claude-haiku-4-5-20251001-v1:0"
        route = {"targets": [f"amazon-bedrock/{claude}", f"bedrock-eu/{claude}"]}
        client = start_proxy(config=config(routes={"r": route})).client()
        us.push(THROTTLED)
        raw = client.chat.completions.with_raw_response.create(model="r", messages=MESSAGES)
        assert raw.parse().choices[0].message.content == "Echo: hi"
        assert raw.headers["x-switchboard-target"] == f"bedrock-eu/{claude}"
        assert [(r.region, r.auth) for r in us.requests] == [("us-east-1", "sigv4")]
        assert [(r.region, r.auth) for r in eu.requests] == [("eu-west-1", "sigv4")]
    finally:
        us.stop()
        eu.stop()


def test_a_bad_instance_is_refused_naming_its_key(isolated_env: Path) -> None:
    models_json(isolated_env, {"org-b": {"extends": "opena", "apiKey": "k"}})
    assert "providers.org-b.extends: unknown provider 'opena'; did you mean 'openai'?" in _refused(isolated_env, {})
    models_json(isolated_env, {"org-b": {"extends": "openai"}})
    assert "providers.org-b.apiKey is required for an instance of 'openai'" in _refused(isolated_env, {})
    models_json(isolated_env, {"groq": {"extends": "openai", "apiKey": "k"}})
    assert "providers.groq.extends: 'groq' is itself a provider" in _refused(isolated_env, {})


def test_an_instance_without_its_key_does_not_borrow_the_parent_s(
    isolated_env: Path, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent")
    models_json(isolated_env, {"org-b": {"extends": "openai", "apiKey": "$UNSET_ORG_B_KEY"}})
    http = start_proxy(config=config()).http()
    ids = {e["id"] for e in http.get("/v1/models").json()["data"]}
    assert "openai/gpt-4o" in ids and "org-b/gpt-4o" not in ids
    r = http.post("/v1/chat/completions", json={"model": "org-b/gpt-4o", "messages": MESSAGES})
    assert r.status_code == 401 and "org-b" in r.json()["error"]["message"]
