"""Cloud adapters never decode or re-encode a request body: the wire module (or the passthrough) builds it
once, already as the upstream wants it.

* Claude on Vertex: the Messages body without ``model`` and with ``anthropic_version``, at ``rawPredict`` /
  ``streamRawPredict``.
* Azure: the deployment named by ``AZURE_OPENAI_DEPLOYMENT_NAME_MAP`` is the body's ``model``, on the
  Responses path and on the chat completions passthrough.

Each request goes through the live proxy to a fake upstream while msgspec's JSON codec is watched: a call
to it from any ``providers.cloud`` module fails the test.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.conftest import Proxy, models_json
from tests.fakes.azure_upstream import FakeAzure
from tests.fakes.vertex_upstream import FakeVertex

AZURE = "azure-openai-responses"
CLAUDE = "claude-sonnet-4-5@20250929"
HI = [{"role": "user", "content": "hi there"}]


class CodecWatch:
    """Which modules called msgspec's JSON decode/encode while the proxy served the requests."""

    def __init__(self) -> None:
        self.callers: list[str] = []

    def from_adapters(self) -> list[str]:
        return [c for c in self.callers if c.startswith("providers.cloud")]


@pytest.fixture
def codec(monkeypatch: pytest.MonkeyPatch) -> CodecWatch:
    watch = CodecWatch()
    decode, encode = msgspec.json.decode, msgspec.json.encode

    def watched(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            watch.callers.append(str(sys._getframe(1).f_globals.get("__name__")))
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(msgspec.json, "decode", watched(decode))
    monkeypatch.setattr(msgspec.json, "encode", watched(encode))
    return watch


def _chat(proxy: Proxy, model: str, *, stream: bool) -> str:
    client = proxy.client()
    if not stream:
        answer = client.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
        return answer.choices[0].message.content or ""
    chunks = client.chat.completions.create(model=model, messages=HI, stream=True)  # type: ignore[call-overload]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _built_once(codec: CodecWatch, wire_module: str) -> None:
    assert wire_module in codec.callers, "the watch saw the proxy's own encode (it is in effect)"
    assert codec.from_adapters() == [], "a cloud adapter decoded or re-encoded the body"


# --- Claude on Vertex ---------------------------------------------------------------------------------------


@pytest.fixture
def vertex(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVertex]:
    fake = FakeVertex().start()
    monkeypatch.setenv("GOOGLE_CLOUD_API_KEY", fake.api_key)
    models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
    yield fake
    fake.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_vertex_claude_body_is_built_for_raw_predict(
    vertex: FakeVertex, codec: CodecWatch, start_proxy: Callable[..., Proxy], stream: bool
) -> None:
    assert _chat(start_proxy(), f"google-vertex/{CLAUDE}", stream=stream) == "Echo: hi there"
    call = vertex.calls[-1]
    method = "streamRawPredict" if stream else "rawPredict"
    assert call.path == f"/v1/publishers/anthropic/models/{CLAUDE}:{method}"
    assert "model" not in call.body and call.body["anthropic_version"] == "vertex-2023-10-16"
    assert "anthropic-version" not in call.headers
    _built_once(codec, "providers.wire.anthropic_messages")


# --- Azure deployments --------------------------------------------------------------------------------------


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzure]:
    fake = FakeAzure(deployments=("dep-41", "chat-dep")).start()
    monkeypatch.setenv("AZURE_OPENAI_BASE_URL", fake.url + "/openai/v1")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME_MAP", "gpt-4.1=dep-41,my-chat=chat-dep")
    yield fake
    fake.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_azure_responses_body_names_the_deployment(
    azure: FakeAzure, codec: CodecWatch, start_proxy: Callable[..., Proxy], stream: bool
) -> None:
    assert _chat(start_proxy(), f"{AZURE}/gpt-4.1", stream=stream) == "Echo: hi there"
    assert azure.last.path == "/openai/v1/responses" and azure.last.body["model"] == "dep-41"
    _built_once(codec, "providers.wire.openai_responses")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_azure_chat_passthrough_body_names_the_deployment(
    azure: FakeAzure,
    codec: CodecWatch,
    isolated_env: Path,
    start_proxy: Callable[..., Proxy],
    stream: bool,
) -> None:
    models_json(isolated_env, {AZURE: {"models": [{"id": "my-chat", "api": "openai-completions"}]}})
    assert _chat(start_proxy(), f"{AZURE}/my-chat", stream=stream).strip() == "Echo: hi there"
    assert azure.last.path == "/openai/v1/chat/completions" and azure.last.body["model"] == "chat-dep"
    _built_once(codec, "proxy.chat")
