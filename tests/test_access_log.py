"""The JSON access log through the real server: one line per request (answered, streamed, refused), parsed
and checked against the requests and their x-request-id; never a key. To a file in process, and to stderr
from a ``switchboard serve`` subprocess."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from providers.errors import ConfigError
from proxy.config import DiscoveryConfig, Paths, ServerConfig
from proxy.telemetry.config import AccessLogConfig
from proxy.telemetry.observer import build_telemetry
from tests.conftest import Proxy, write_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.serve_process import child_env, serving
from tests.test_metrics import MASTER, PRICES, ask, create_key, local_models, sdk

COST = (12 * PRICES["input"] + 9 * PRICES["output"]) / 1e6


def lines_of(path: Path, n: int) -> list[dict[str, Any]]:
    """The log's lines once there are ``n`` (a thread writes them after the request is over)."""
    deadline = time.monotonic() + 10
    while True:
        text = path.read_text() if path.exists() else ""
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


@pytest.fixture
def logged(
    isolated_env: Path,
    fake_openai: FakeOpenAI,
    start_proxy: Callable[..., Proxy],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> tuple[Proxy, Path]:
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    local_models(isolated_env, fake_openai)
    path = tmp_path / "access.log"
    config = ServerConfig(
        discovery=DiscoveryConfig(enabled=False), access_log=AccessLogConfig(enabled=True, path=str(path))
    )
    return start_proxy(config=config), path


def test_one_line_per_request_with_its_key_id_tokens_cost_and_times(logged: tuple[Proxy, Path]) -> None:
    proxy, path = logged
    key, key_id = create_key(proxy)
    client = sdk(proxy, key)
    answer = client.chat.completions.with_raw_response.create(
        model="local/m", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": "mine-42"}
    )
    assert answer.headers["x-request-id"] == "mine-42"
    with client.chat.completions.with_streaming_response.create(
        model="local/m", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as streamed:
        stream_id = streamed.headers["x-request-id"]
        assert list(streamed.iter_lines())
    bogus = "sk-sb-" + "y" * 43
    with pytest.raises(openai.AuthenticationError) as refused:
        ask(sdk(proxy, bogus))
    refused_id = refused.value.response.headers["x-request-id"]

    first, second, third = lines_of(path, 3)
    assert first["request_id"] == "mine-42"
    assert first["key_id"] == key_id
    assert first["surface"] == "/v1/chat/completions"
    assert first["model"] == "local/m"
    assert first["target"] == "local/m"
    assert (first["status"], first["error"], first["stream"], first["attempts"]) == (200, None, False, 1)
    assert (first["input_tokens"], first["output_tokens"], first["cached_tokens"]) == (12, 9, 0)
    assert first["cost_usd"] == pytest.approx(COST)
    assert first["latency_ms"] > 0 and first["ttft_ms"] > 0 and first["upstream_ms"] > 0
    assert first["latency_ms"] >= first["upstream_ms"]
    assert first["ts"].endswith("Z")

    assert second["request_id"] == stream_id
    assert (second["stream"], second["status"], second["output_tokens"]) == (True, 200, 9)
    assert 0 < second["ttft_ms"] <= second["latency_ms"]

    assert third["request_id"] == refused_id
    assert (third["status"], third["error"], third["key_id"], third["target"]) == (401, "invalid_api_key", None, None)
    assert third["input_tokens"] is None and third["cost_usd"] == 0

    text = path.read_text()
    for secret in (key, bogus, MASTER, "upstream-secret"):
        assert secret not in text


def test_the_master_key_is_logged_as_master(logged: tuple[Proxy, Path]) -> None:
    proxy, path = logged
    ask(sdk(proxy, MASTER))
    (line,) = lines_of(path, 1)
    assert line["key_id"] == "master"
    assert MASTER not in path.read_text()


def test_a_hostile_model_name_stays_inside_its_json_string(logged: tuple[Proxy, Path]) -> None:
    proxy, path = logged
    hostile = 'x"}\n{"status": 200, "injected": true'
    r = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": hostile, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {MASTER}"},
    )
    assert r.status_code == 404
    (line,) = lines_of(path, 1)
    assert line["model"] == hostile
    assert "injected" not in line


def test_to_stderr_from_switchboard_serve(isolated_env: Path, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    local_models(isolated_env, fake_openai)
    write_json(isolated_env / "config.json", {"access_log": {"enabled": True}, "discovery": {"enabled": False}})
    with serving(tmp_path, child_env()) as served:
        r = httpx.post(
            served.url + "/v1/chat/completions",
            json={"model": "local/m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-request-id": "from-stderr-1"},
        )
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while '"from-stderr-1"' not in served.output and time.monotonic() < deadline:
            time.sleep(0.02)
    found = [json.loads(line) for line in served.output.splitlines() if '"from-stderr-1"' in line]
    assert len(found) == 1
    assert (found[0]["status"], found[0]["target"], found[0]["output_tokens"]) == (200, "local/m", 9)


def test_an_unwritable_path_is_a_config_error_naming_the_key(isolated_env: Path, tmp_path: Path) -> None:
    config = ServerConfig(access_log=AccessLogConfig(enabled=True, path=str(tmp_path / "missing-dir" / "a.log")))
    with pytest.raises(ConfigError) as err:
        build_telemetry(config, Paths.from_env(), env={})
    assert "access_log.path" in err.value.message and "missing-dir" in err.value.message
