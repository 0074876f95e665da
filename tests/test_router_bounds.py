"""Client model strings cannot pin memory: the router's cache is bounded in entries and key length.

Through the real proxy (uvicorn on loopback, raw httpx), with the router introspected on the running
proxy's runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from proxy.router import MAX_MODEL_LENGTH
from tests.conftest import Proxy, models_json
from tests.fakes.openai_upstream import FakeOpenAI


def _proxy(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any) -> Proxy:
    spec = {"baseUrl": fake_openai.url + "/v1", "api": "openai-completions", "apiKey": "sk-1", "models": [{"id": "m"}]}
    models_json(isolated_env, {"local": spec})
    return start_proxy()  # type: ignore[no-any-return]


def _chat(http: httpx.Client, model: str) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_a_huge_model_name_is_a_400_that_does_not_echo_it(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    proxy = _proxy(isolated_env, fake_openai, start_proxy)
    http = proxy.http()
    before = proxy.runtime.router.cache_size
    for i in range(3):
        resp = _chat(http, f"local/{i}" + "x" * (16 * 1024 * 1024))
        assert resp.status_code == 400, resp.text[:300]
        err = resp.json()["error"]
        assert err["param"] == "model" and f"at most {MAX_MODEL_LENGTH}" in err["message"]
        assert len(resp.content) < 1000
    assert proxy.runtime.router.cache_size == before
    assert not fake_openai.requests  # refused before anything was sent upstream


def test_the_longest_accepted_name_is_the_limit(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any) -> None:
    http = _proxy(isolated_env, fake_openai, start_proxy).http()
    longest = "local/" + "y" * (MAX_MODEL_LENGTH - len("local/"))
    assert _chat(http, longest).status_code == 200
    assert fake_openai.last.body["model"] == longest.removeprefix("local/")
    resp = _chat(http, longest + "y")
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"


def test_distinct_unknown_ids_do_not_fill_the_cache(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    proxy = _proxy(isolated_env, fake_openai, start_proxy)
    http = proxy.http()
    assert _chat(http, "local/m").status_code == 200  # a catalog model: cached
    cached = proxy.runtime.router.cache_size
    fake_openai.rejected_keys.add("sk-1")
    for i in range(200):
        resp = _chat(http, f"local/invented-{i}-" + "z" * 200)
        assert resp.status_code == 401, resp.text[:300]
    assert proxy.runtime.router.cache_size == cached
    fake_openai.rejected_keys.clear()
    assert _chat(http, "local/m").status_code == 200


def test_an_unknown_model_is_quoted_cut_short(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any) -> None:
    http = _proxy(isolated_env, fake_openai, start_proxy).http()
    name = "nosuch-" + "q" * (MAX_MODEL_LENGTH - 7)
    resp = _chat(http, name)
    assert resp.status_code == 404
    message = resp.json()["error"]["message"]
    assert name not in message and name[:40] in message and f"({len(name)} characters)" in message
