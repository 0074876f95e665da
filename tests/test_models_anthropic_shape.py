"""``GET /v1/models`` in Anthropic's list shape when the request carries ``anthropic-version``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx

from tests.conftest import Proxy, local_provider
from tests.fakes.openai_upstream import FakeOpenAI


def test_anthropic_sdk_lists_models(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Callable[..., Proxy]
) -> None:
    local_provider(isolated_env, fake_openai)
    proxy = start_proxy()
    client = anthropic.Anthropic(base_url=proxy.url, api_key="unused", max_retries=0)
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert "local/m" in ids
    assert all(m.type == "model" and m.display_name and m.created_at for m in page.data)
    raw = httpx.get(proxy.url + "/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
    assert raw["has_more"] is False
    assert raw["first_id"] == raw["data"][0]["id"] and raw["last_id"] == raw["data"][-1]["id"]
    # Without the header: OpenAI's shape.
    plain = httpx.get(proxy.url + "/v1/models").json()
    assert plain["object"] == "list" and plain["data"][0]["object"] == "model"
    client.close()
