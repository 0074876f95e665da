"""GET /metrics through the real server: requests made with the openai SDK against a fake upstream, the
exposition parsed with prometheus_client's parser and checked against them (counts, tokens, cost,
statuses, streams), and who may read it."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from providers.errors import ConfigError
from proxy.config import DiscoveryConfig, Paths, ServerConfig
from proxy.telemetry.config import MetricsConfig
from proxy.telemetry.observer import build_telemetry
from tests.conftest import Proxy, models_json
from tests.fakes.openai_upstream import Action, FakeOpenAI

MASTER = "sk-sb-master-0123456789abcdef0123"
METRICS_TOKEN = "metrics-token-0123456789"
#: Per million tokens; the fake answers 12 prompt and 9 completion tokens.
PRICES = {"input": 2.0, "output": 8.0, "cacheRead": 0.5, "cacheWrite": 2.5}
CHAT = "/v1/chat/completions"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def config(**metrics: Any) -> ServerConfig:
    return ServerConfig(discovery=DiscoveryConfig(enabled=False), metrics=MetricsConfig(enabled=True, **metrics))


def local_models(sb_home: Path, fake: FakeOpenAI) -> None:
    models_json(
        sb_home,
        {
            "local": {
                "baseUrl": fake.url + "/v1",
                "api": "openai-completions",
                "apiKey": "upstream-secret",
                "models": [{"id": "m", "cost": PRICES}, {"id": "other-m"}],
            }
        },
    )


def scrape(proxy: Proxy, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.get(proxy.url + "/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample with exactly these labels (0 when absent, as Prometheus reads a missing counter)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def ask(client: openai.OpenAI, model: str = "local/m", **kw: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **kw)


@pytest.fixture
def plain(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Callable[..., Proxy]) -> Proxy:
    local_models(isolated_env, fake_openai)
    return start_proxy(config=config())


def test_counts_tokens_cost_and_durations_match_the_requests(plain: Proxy) -> None:
    client = plain.client()
    ask(client)
    ask(client)
    text = "".join(c.choices[0].delta.content or "" for c in ask(client, stream=True) if c.choices)
    assert text.startswith("Echo")
    with pytest.raises(openai.NotFoundError):
        ask(client, model="nowhere/at-all")
    s = scrape(plain)

    m = {"surface": CHAT, "provider": "local", "model": "m"}
    assert value(s, "switchboard_requests_total", **m, status="200") == 3
    assert value(s, "switchboard_requests_total", surface=CHAT, provider="none", model="none", status="404") == 1
    assert value(s, "switchboard_request_duration_seconds_count", **m) == 3
    assert value(s, "switchboard_request_duration_seconds_sum", **m) > 0
    # Only the stream has a time to first token.
    assert value(s, "switchboard_time_to_first_token_seconds_count", **m) == 1
    assert value(s, "switchboard_upstream_duration_seconds_count", provider="local", model="m", status="200") == 3
    assert value(s, "switchboard_overhead_seconds_count", surface=CHAT) == 4
    # 12 prompt and 9 completion tokens per answer (the stream's usage chunk was asked for by Switchboard).
    target = {"provider": "local", "model": "m"}
    assert value(s, "switchboard_tokens_total", **target, type="input") == 36
    assert value(s, "switchboard_tokens_total", **target, type="output") == 27
    assert value(s, "switchboard_tokens_total", **target, type="cached") == 0
    assert math.isclose(value(s, "switchboard_cost_usd_total", **target), 3 * (12 * 2.0 + 9 * 8.0) / 1e6)
    assert value(s, "switchboard_in_flight_requests", surface=CHAT) == 0
    assert total(s, "switchboard_retries_total") == 0
    assert total(s, "switchboard_fallbacks_total") == 0


def test_requests_past_a_recording_batch_are_all_counted(plain: Proxy) -> None:
    # Metrics records ended requests in batches (and before a scrape): more than one batch, then a scrape.
    client = plain.client()
    for _ in range(300):
        ask(client)
    s = scrape(plain)
    assert value(s, "switchboard_requests_total", surface=CHAT, provider="local", model="m", status="200") == 300
    assert value(s, "switchboard_tokens_total", provider="local", model="m", type="input") == 300 * 12


def test_upstream_errors_are_counted_with_their_status(plain: Proxy, fake_openai: FakeOpenAI) -> None:
    fake_openai.push(Action("error", status=500, body={"error": {"message": "boom", "type": "server_error"}}))
    with pytest.raises(openai.InternalServerError):
        ask(plain.client())
    s = scrape(plain)
    assert value(s, "switchboard_requests_total", surface=CHAT, provider="local", model="m", status="500") == 1
    assert value(s, "switchboard_upstream_duration_seconds_count", provider="local", model="m", status="500") == 1
    # An upstream error costs nothing.
    assert total(s, "switchboard_tokens_total") == 0


def test_a_client_supplied_model_name_never_becomes_a_label(plain: Proxy) -> None:
    """``local/<anything>`` routes to the provider; its model label is "other", not the client's string."""
    invented = "made-up-model-7f3a9c"
    ask(plain.client(), model=f"local/{invented}")
    r = httpx.get(plain.url + "/metrics")
    assert invented not in r.text
    s = parse(r.text)
    assert value(s, "switchboard_requests_total", surface=CHAT, provider="local", model="other", status="200") == 1


def test_metrics_are_off_by_default(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)  # tracing would be on: the observer with it
    local_models(isolated_env, fake_openai)
    proxy = start_proxy()
    assert proxy.runtime.observer is None
    r = httpx.get(proxy.url + "/metrics")
    assert r.status_code == 404
    assert '"metrics": {"enabled": true}' in r.json()["error"]["message"]


def test_a_metrics_token_closes_the_endpoint_without_the_gateway(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SB_METRICS_TOKEN", METRICS_TOKEN)
    local_models(isolated_env, fake_openai)
    proxy = start_proxy(config=config(token="$SB_METRICS_TOKEN"))
    r = httpx.get(proxy.url + "/metrics")
    assert r.status_code == 401
    assert "metrics token" in r.json()["error"]["message"]
    assert httpx.get(proxy.url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scrape(proxy, METRICS_TOKEN)


# --- with the gateway -------------------------------------------------------------------------------


@pytest.fixture
def gateway(
    isolated_env: Path,
    fake_openai: FakeOpenAI,
    start_proxy: Callable[..., Proxy],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Proxy]:
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    monkeypatch.setenv("SB_METRICS_TOKEN", METRICS_TOKEN)
    local_models(isolated_env, fake_openai)

    def start(**metrics: Any) -> Proxy:
        return start_proxy(config=config(token="$SB_METRICS_TOKEN", **metrics))

    return start


def create_key(proxy: Proxy, **spec: Any) -> tuple[str, str]:
    r = httpx.post(
        proxy.url + "/admin/v1/keys", json={"name": "t", **spec}, headers={"Authorization": f"Bearer {MASTER}"}
    )
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["id"]


def sdk(proxy: Proxy, key: str) -> openai.OpenAI:
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)
    proxy._clients.append(client)
    return client


def test_refusals_are_counted_and_only_the_master_key_or_token_may_scrape(gateway: Callable[..., Proxy]) -> None:
    proxy = gateway()
    key, _ = create_key(proxy, rpm=1)
    client = sdk(proxy, key)
    ask(client, stream=True)
    with pytest.raises(openai.RateLimitError):
        ask(client)
    with pytest.raises(openai.AuthenticationError):
        ask(sdk(proxy, "sk-sb-" + "x" * 43))

    r = httpx.get(proxy.url + "/metrics")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "master key or the metrics token" in r.json()["error"]["message"]
    # A virtual key is a client's key, not an operator's.
    assert httpx.get(proxy.url + "/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    s = scrape(proxy, MASTER)
    assert scrape(proxy, METRICS_TOKEN).keys() == s.keys()

    assert value(s, "switchboard_requests_total", surface=CHAT, provider="local", model="m", status="200") == 1
    # Refused by the key's limits, and for the key itself: no target was tried.
    assert value(s, "switchboard_requests_total", surface=CHAT, provider="none", model="none", status="429") == 1
    assert value(s, "switchboard_requests_total", surface=CHAT, provider="none", model="none", status="401") == 1
    assert value(s, "switchboard_tokens_total", provider="local", model="m", type="output") == 9
    assert value(s, "switchboard_time_to_first_token_seconds_count", surface=CHAT, provider="local", model="m") == 1
    text = httpx.get(proxy.url + "/metrics", headers={"Authorization": f"Bearer {MASTER}"}).text
    for secret in (MASTER, METRICS_TOKEN, key, "upstream-secret"):
        assert secret not in text
    # Per-key series only when the operator asks for them.
    assert "switchboard_key_" not in text


def test_per_key_budget_remaining_when_opted_in(gateway: Callable[..., Proxy]) -> None:
    proxy = gateway(per_key=True)
    key, key_id = create_key(proxy, budget=1.0, period="day", rpm=100, tpm=100_000)
    _, unlimited_id = create_key(proxy, name="free")
    ask(sdk(proxy, key))
    s = scrape(proxy, MASTER)
    cost = (12 * 2.0 + 9 * 8.0) / 1e6
    assert value(s, "switchboard_key_budget_usd", key_id=key_id) == 1.0
    assert math.isclose(value(s, "switchboard_key_budget_remaining_usd", key_id=key_id), 1.0 - cost)
    assert value(s, "switchboard_key_rpm_limit", key_id=key_id) == 100
    assert value(s, "switchboard_key_tpm_limit", key_id=key_id) == 100_000
    # One request of 12 + 9 tokens in the key's window.
    assert value(s, "switchboard_key_requests_remaining", key_id=key_id) == 99
    assert value(s, "switchboard_key_tokens_remaining", key_id=key_id) == 100_000 - 21
    assert not any(dict(labels).get("key_id") == unlimited_id for _, labels in s)


def test_a_metrics_token_that_does_not_resolve_is_a_config_error(isolated_env: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build_telemetry(config(token="$SB_UNSET_METRICS_TOKEN"), Paths.from_env(), env={})
    assert "metrics.token" in err.value.message
