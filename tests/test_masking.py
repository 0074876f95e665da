"""A key the provider echoes back never reaches the client or the log, in any form or at any length.

Through the real proxy and :class:`tests.fakes.faulty_upstream.FaultyUpstream`, which echoes the key
it received (read as Latin-1, as many servers read headers).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import models_json
from tests.fakes.faulty_upstream import FaultyUpstream
from tests.fakes.server import free_port

KEY = "sk-mask-0123456789abcdefghijklmn"  # 30 characters
CHAT = "/v1/chat/completions"


@pytest.fixture
def fake() -> Iterator[FaultyUpstream]:
    upstream = FaultyUpstream().start()
    yield upstream
    upstream.stop()


def _provider(sb_home: Path, base_url: str, key: str, api: str = "openai-completions") -> None:
    models_json(sb_home, {"p": {"baseUrl": base_url, "api": api, "apiKey": key, "models": [{"id": "m"}]}})


def _ask(stream: bool = False) -> dict[str, Any]:
    return {"model": "p/m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def _logged(proxy: Any) -> str:
    return "\n".join(record.getMessage() for record in proxy.logs)


def test_key_in_a_passthrough_stream_error_event_is_masked(
    fake: FaultyUpstream, isolated_env: Path, start_proxy: Any
) -> None:
    fake.mode = "echo_key_stream"
    _provider(isolated_env, fake.url + "/v1", KEY)
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask(stream=True))
    assert KEY.encode() not in resp.content
    error_events = [e for e in resp.content.split(b"\n\n") if b'"error"' in e]
    assert error_events and b"invalid api key ***" in error_events[0]
    assert resp.content.endswith(b"data: [DONE]\n\n")


def test_non_ascii_key_echoed_as_latin1_is_masked(fake: FaultyUpstream, isolated_env: Path, start_proxy: Any) -> None:
    key = "sk-ключ-0123456789abcdef"
    fake.mode = "echo_key_error"
    _provider(isolated_env, fake.url + "/v1", key)
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask())
    assert resp.status_code == 401
    message = resp.json()["error"]["message"]
    mojibake = key.encode().decode("latin-1")
    assert fake.last_key() == mojibake  # the fault is real: this is what the provider echoes
    assert "Incorrect API key provided: ***" in message
    assert mojibake not in message and key not in message
    assert mojibake not in _logged(proxy) and key not in _logged(proxy)


@pytest.mark.parametrize("kept", [5, 25, 29])
def test_key_across_the_length_cut_is_masked_whole(
    fake: FaultyUpstream, isolated_env: Path, start_proxy: Any, kept: int
) -> None:
    """A message cut at 2,000 characters used to keep the first ``kept`` characters of the key."""
    fake.mode = "echo_key_error"
    prefix = len("Incorrect API key provided: ")
    fake.echo_padding = 2000 - prefix - kept
    _provider(isolated_env, fake.url + "/v1", KEY)
    proxy = start_proxy()
    message = proxy.http().post(CHAT, json=_ask()).json()["error"]["message"]
    assert KEY[:kept] not in message
    assert len(message) <= 2001 and message.endswith("…")  # still cut, after masking


def test_anthropic_error_body_with_status_200_is_masked(
    fake: FaultyUpstream, isolated_env: Path, start_proxy: Any
) -> None:
    fake.mode = "anthropic_error_200"
    _provider(isolated_env, fake.url, KEY, api="anthropic-messages")
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask())
    assert fake.last_key() == KEY
    assert resp.status_code == 401
    assert KEY not in resp.text
    assert "invalid x-api-key ***" in resp.json()["error"]["message"]
    assert KEY not in _logged(proxy)


def test_key_in_a_translated_stream_error_event_is_masked(
    fake: FaultyUpstream, isolated_env: Path, start_proxy: Any
) -> None:
    fake.mode = "anthropic_stream_error"
    _provider(isolated_env, fake.url, KEY, api="anthropic-messages")
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask(stream=True))
    assert fake.last_key() == KEY
    assert KEY.encode() not in resp.content
    assert b"bad key ***" in resp.content and resp.content.endswith(b"data: [DONE]\n\n")
    assert KEY not in _logged(proxy)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("api", "base", "path"),
    [("openai-completions", "/v1", "/v1/chat/completions"), ("anthropic-messages", "", "/v1/messages")],
)
def test_password_in_base_url_never_shows(
    isolated_env: Path, start_proxy: Any, stream: bool, api: str, base: str, path: str
) -> None:
    password = "pa55-w0rd-in-the-url"
    port = free_port()  # nothing listens there: every request fails to connect
    _provider(isolated_env, f"http://user:{password}@127.0.0.1:{port}{base}", KEY, api=api)
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask(stream))
    assert resp.status_code == 502
    message = resp.json()["error"]["message"]
    assert "could not connect to p" in message and "baseUrl" in message
    assert password not in message and path not in message  # the provider, not the URL
    logged = _logged(proxy)
    assert password not in logged
    assert f"127.0.0.1:{port}{path}" in logged  # the URL stays in the server log


def test_stream_without_the_key_is_forwarded_unchanged(
    fake: FaultyUpstream, isolated_env: Path, start_proxy: Any
) -> None:
    _provider(isolated_env, fake.url + "/v1", KEY)
    proxy = start_proxy()
    resp = proxy.http().post(CHAT, json=_ask(stream=True))
    events = [json.loads(e.removeprefix(b"data: ")) for e in resp.content.split(b"\n\n")[:-2] if e]
    assert [e["choices"][0]["delta"].get("content") for e in events] == ["one ", "two ", None]
