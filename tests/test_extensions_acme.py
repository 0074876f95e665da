"""The example extension ``examples/switchboard-acme``, installed in the test environment, end to end.

``switchboard serve`` runs as a real process that finds the package through its entry point; the ``openai``
SDK talks to it, and the Acme fakes (``tests/fakes/acme.py``) speak Acme's own NDJSON wire API and its
RFC 8628 device-code login. ``switchboard login`` runs on a pseudo-terminal as a user would drive it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from providers.canonical import Finish, StreamError, TextDelta, UsageEvent
from tests.conftest import auth_json, models_json, write_json
from tests.fakes.acme import FakeAcme, FakeAcmeAuth
from tests.serve_process import child_env, run_cli, serving
from tests.test_cli_auth import SWITCHBOARD, Term

FIXTURES = Path(__file__).parent / "fixtures" / "acme"
VERSION = importlib.metadata.version("switchboard-acme")


@pytest.fixture
def acme(isolated_env: Path) -> Iterator[tuple[FakeAcme, FakeAcmeAuth]]:
    api = FakeAcme().start()
    auth = FakeAcmeAuth(api).start()
    models_json(isolated_env, {"acme": {"baseUrl": api.url + "/v1"}})
    write_json(isolated_env / "config.json", {"discovery": {"enabled": False}})
    yield api, auth
    auth.stop()
    api.stop()


def _env(auth: FakeAcmeAuth) -> dict[str, str]:
    return child_env({"ACME_AUTH_URL": auth.url})


def _logged_in(home: Path, auth: FakeAcmeAuth, *, expires_in_ms: int = 3_600_000) -> dict[str, Any]:
    tokens = auth.issue()
    entry = {
        "type": "oauth",
        "access": tokens["access_token"],
        "refresh": tokens["refresh_token"],
        "expires": int(time.time() * 1000) + expires_in_ms,
    }
    auth_json(home, {"acme": entry})
    return entry


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def test_chat_not_streamed_and_streamed(
    acme: tuple[FakeAcme, FakeAcmeAuth], isolated_env: Path, tmp_path: Path
) -> None:
    api, auth = acme
    entry = _logged_in(isolated_env, auth)
    messages: Any = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    with serving(tmp_path, _env(auth)) as served, _client(served.url) as client:
        assert "extensions: switchboard-acme " + VERSION in served.output
        answer = client.chat.completions.create(model="acme/acme-1", messages=messages)
        assert answer.choices[0].message.content == "Acme says: hello there"
        assert answer.choices[0].finish_reason == "stop"
        assert answer.usage is not None
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (4, 4)
        sent = api.last
        assert sent.path == "/v1/generate" and sent.headers["Authorization"] == f"Bearer {entry['access']}"
        assert sent.body == {
            "model": "acme-1",
            "prompt_turns": [{"speaker": "system", "text": "be brief"}, {"speaker": "user", "text": "hello there"}],
            "stream": False,
        }

        stream = client.chat.completions.create(
            model="acme/acme-1",
            messages=messages,
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Acme says: hello"
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
        usage = [c.usage for c in chunks if c.usage is not None]
        assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (4, 3)
        assert api.last.body["stream"] is True and api.last.body["limit"] == 3

        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(
                model="acme/acme-1",
                messages=messages,
                tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            )
        assert bad.value.body["param"] == "tools"  # type: ignore[index]
        assert "Acme has no tools" in bad.value.body["message"]  # type: ignore[index]


def test_login_through_the_device_code_flow_then_serve_with_the_token(
    acme: tuple[FakeAcme, FakeAcmeAuth], isolated_env: Path, tmp_path: Path
) -> None:
    api, auth = acme
    env = {**_env(auth), "TERM": "dumb"}
    t = Term([*SWITCHBOARD, "login"], env)
    menu = t.expect("Number or id (Enter to cancel): ")
    assert re.search(r"^\s*\d+\. Acme \(device code\) \[acme\]", menu.split("API keys:")[0], re.M), menu
    t.send("acme")
    shown = t.expect("Open this URL in a browser")
    user_code = re.search(r"Enter the code (ACME-\d+) at http://127\.0\.0\.1:\d+/device\r?\n", shown)
    assert user_code is not None, t.output
    # Approve only once the flow has been told to slow down, so every answer of RFC 8628 §3.5 is played.
    deadline = time.monotonic() + 20
    while "slow_down" not in auth.poll_answers:
        assert time.monotonic() < deadline, auth.poll_answers
        time.sleep(0.02)
    assert httpx.post(auth.url + "/device", data={"user_code": user_code.group(1)}).status_code == 200
    assert t.wait() == 0, t.output
    assert "Logged in to Acme (device code)" in t.output
    stored = json.loads((isolated_env / "auth.json").read_text())["acme"]
    assert stored["type"] == "oauth" and stored["access"] in api.tokens and stored["refresh"].startswith("acme-rt-")
    assert stored["expires"] > time.time() * 1000
    assert (isolated_env / "auth.json").stat().st_mode & 0o777 == 0o600
    assert stored["access"] not in t.output and stored["refresh"] not in t.output
    answers = auth.poll_answers
    assert answers[0] == "authorization_pending" and answers[-1] == "token" and answers.count("slow_down") == 1
    slow = answers.index("slow_down")
    assert auth.poll_times[slow + 1] - auth.poll_times[slow] >= auth.slow_interval * 0.9  # it slowed down

    with serving(tmp_path, _env(auth)) as served, _client(served.url) as client:
        answer = client.chat.completions.create(model="acme/acme-1", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "Acme says: hi"
        assert api.last.headers["Authorization"] == f"Bearer {stored['access']}"


def test_an_expired_login_is_refreshed_once_and_stored(
    acme: tuple[FakeAcme, FakeAcmeAuth], isolated_env: Path, tmp_path: Path
) -> None:
    api, auth = acme
    old = _logged_in(isolated_env, auth, expires_in_ms=-1000)
    api.tokens.discard(old["access"])  # an expired token is refused upstream, as a real one would be
    with serving(tmp_path, _env(auth)) as served, _client(served.url) as client:
        for _ in range(2):
            answer = client.chat.completions.create(model="acme/acme-1", messages=[{"role": "user", "content": "x"}])
            assert answer.choices[0].message.content == "Acme says: x"
    assert auth.refreshes == 1
    stored = json.loads((isolated_env / "auth.json").read_text())["acme"]
    assert stored["access"] != old["access"] and stored["refresh"] != old["refresh"]
    assert stored["expires"] > time.time() * 1000
    assert (isolated_env / "auth.json").stat().st_mode & 0o777 == 0o600
    assert api.last.headers["Authorization"] == f"Bearer {stored['access']}"


def test_a_refused_refresh_says_to_log_in_again(
    acme: tuple[FakeAcme, FakeAcmeAuth], isolated_env: Path, tmp_path: Path
) -> None:
    _, auth = acme
    old = _logged_in(isolated_env, auth, expires_in_ms=-1000)
    auth.refresh_tokens[old["refresh"]] = False  # revoked
    with (
        serving(tmp_path, _env(auth)) as served,
        _client(served.url) as client,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        client.chat.completions.create(model="acme/acme-1", messages=[{"role": "user", "content": "x"}])
    assert "run 'switchboard login acme' again" in refused.value.body["message"]  # type: ignore[index]
    assert old["refresh"] not in refused.value.body["message"]  # type: ignore[index]


def test_providers_and_doctor_list_the_extension(acme: tuple[FakeAcme, FakeAcmeAuth], isolated_env: Path) -> None:
    _, auth = acme
    env = _env(auth)
    listed = run_cli("providers", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    [report] = [r for r in data["extensions"] if r["package"] == "switchboard-acme"]
    assert report["version"] == VERSION and report["status"] == "active" and report["problem"] is None
    assert (report["entry_point"], report["target"]) == ("acme", "switchboard_acme:EXTENSION")
    assert (report["providers"], report["wire_apis"], report["logins"]) == (["acme"], ["acme-ndjson"], ["acme"])
    row = next(p for p in data["providers"] if p["id"] == "acme")
    assert row == {
        "id": "acme",
        "name": "Acme",
        "api": "acme-ndjson",
        "origin": f"switchboard-acme {VERSION}",
        "credential": None,
    }
    text = run_cli("providers", env=env).stdout
    assert re.search(rf"^acme\s+acme-ndjson\s+switchboard-acme {VERSION}\s+-$", text, re.M), text
    assert (
        f"ok      extension switchboard-acme {VERSION} (entry point acme = switchboard_acme:EXTENSION) loaded" in text
    )

    _logged_in(isolated_env, auth)
    doctor = json.loads(run_cli("doctor", "--json", env=env).stdout)
    row = next(r for r in doctor if r["provider"] == "acme")
    assert row["usable"] and row["source"] == "auth.json OAuth login"
    assert row["extension"] == {"package": "switchboard-acme", "version": VERSION}
    assert next(r for r in doctor if r["provider"] == "openai")["extension"] is None
    text = run_cli("doctor", env=env).stdout
    assert re.search(r"^acme\s+ok\s+auth\.json OAuth login", text, re.M), text
    assert f"extension switchboard-acme {VERSION}" in text


def _split_everywhere(data: bytes) -> Iterator[list[bytes]]:
    for cut in range(len(data) + 1):
        yield [data[:cut], data[cut:]]
    yield [data[i : i + 1] for i in range(len(data))]


def test_stream_decoder_at_every_split() -> None:
    from switchboard_acme.wire import AcmeStreamDecoder

    data = (FIXTURES / "stream.ndjson").read_bytes()
    for pieces in _split_everywhere(data):
        decoder = AcmeStreamDecoder("Acme")
        events = [ev for piece in pieces for ev in decoder.feed(piece)] + decoder.close()
        text = "".join(ev.text for ev in events if isinstance(ev, TextDelta))
        assert text == "Acme says: héllo ✓"
        usage = [ev.usage for ev in events if isinstance(ev, UsageEvent)]
        assert [(u.input_tokens, u.output_tokens) for u in usage] == [(7, 3)]
        assert [ev for ev in events if isinstance(ev, Finish)] == [Finish("length")]


def test_stream_decoder_errors_and_cut_streams() -> None:
    from switchboard_acme.wire import AcmeStreamDecoder

    decoder = AcmeStreamDecoder("Acme")
    events = decoder.feed((FIXTURES / "stream_error.ndjson").read_bytes()) + decoder.close()
    errors = [ev.error for ev in events if isinstance(ev, StreamError)]
    assert len(errors) == 1 and "overloaded, try later" in str(errors[0])
    cut = AcmeStreamDecoder("Acme")
    events = cut.feed(b'{"delta": "Acme"}\n{"delta": " sa') + cut.close()
    assert isinstance(events[-1], StreamError) and "ended early" in str(events[-1].error)
