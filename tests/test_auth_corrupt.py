"""A corrupt ``auth.json`` must not take the proxy down with it.

Invalid JSON, a JSON array, invalid UTF-8 or an empty file once made every chat request and
``/v1/models`` answer 500, also for providers keyed by env vars. Now the last good content stays in use
(none at start: the other sources still work), one ERROR names the file and the problem, ``/healthz``
answers 200 with ``"status": "degraded"`` and the problem, and ``switchboard doctor`` reports it. A
login refuses to overwrite the file instead of destroying what it holds.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Proxy, auth_json, models_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_cli_auth import SWITCHBOARD

StartProxy = Callable[..., Proxy]
HI = [{"role": "user", "content": "hi"}]
CORRUPT = {
    "invalid-json": (b'{"groq": {"type": "api_key", "key": "gsk-half', "not valid JSON"),
    "array": (b"[]", "must contain a JSON object"),
    "invalid-utf8": (b'{"groq": "\xff\xfe"}', "not valid UTF-8"),
    "empty": (b"", "the file is empty"),
}
_DEADLINE = 15.0  # the runtime polls mtimes every 2 s


@pytest.fixture
def upstreams(isolated_env: Path, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """openai keyed by its env var; groq keyed by auth.json (when it parses); both at the fake."""
    models_json(
        isolated_env,
        {"openai": {"baseUrl": fake_openai.url + "/v1"}, "groq": {"baseUrl": fake_openai.url + "/openai/v1"}},
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-0123456789")
    return fake_openai


def _corrupt(path: Path, data: bytes) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_bytes(data)
    path.chmod(0o600)
    # A change the 2 s mtime poll cannot miss, even on a filesystem with coarse timestamps.
    os.utime(path, ns=(before + 5_000_000_000, before + 5_000_000_000))


def _ask(proxy: Proxy, model: str) -> str:
    answer = proxy.client().chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
    return answer.choices[0].message.content or ""


def _health_until(proxy: Proxy, status: str) -> dict[str, Any]:
    http = proxy.http()
    deadline = time.monotonic() + _DEADLINE
    while True:
        resp = http.get("/healthz")
        assert resp.status_code == 200
        body: dict[str, Any] = resp.json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, f"/healthz never said {status!r}: {body}"
        time.sleep(0.05)


def _auth_errors(proxy: Proxy) -> list[str]:
    return [r.getMessage() for r in proxy.logs if r.levelno >= logging.ERROR and "auth.json" in r.getMessage()]


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_at_start_other_sources_still_work(
    kind: str, upstreams: FakeOpenAI, isolated_env: Path, start_proxy: StartProxy
) -> None:
    data, problem = CORRUPT[kind]
    path = isolated_env / "auth.json"
    path.write_bytes(data)
    path.chmod(0o600)
    proxy = start_proxy()
    assert _ask(proxy, "openai/gpt-fake") == "Echo: hi"
    assert _ask(proxy, "openai/gpt-fake") == "Echo: hi"
    models = proxy.http().get("/v1/models")
    assert models.status_code == 200 and any(m["id"].startswith("openai/") for m in models.json()["data"])
    health = _health_until(proxy, "degraded")
    (reported,) = health["problems"]
    assert "$SWITCHBOARD_HOME/auth.json" in reported and problem in reported and "fix or remove it" in reported
    errors = _auth_errors(proxy)
    assert len(errors) == 1 and str(path) in errors[0] and problem in errors[0], errors
    assert "gsk-half" not in " ".join(errors) + reported


def test_corrupt_after_start_keeps_the_last_good_version(
    upstreams: FakeOpenAI, isolated_env: Path, start_proxy: StartProxy
) -> None:
    path = auth_json(isolated_env, {"groq": {"type": "api_key", "key": "gsk-stored-0123456789"}})
    proxy = start_proxy()
    assert _ask(proxy, "groq/llama-x") == "Echo: hi"
    assert _health_until(proxy, "ok")["providers"] > 0

    _corrupt(path, b'{"groq": ')
    (reported,) = _health_until(proxy, "degraded")["problems"]
    # Named as the operator knows it, without the server's directories.
    assert "$SWITCHBOARD_HOME/auth.json" in reported and str(isolated_env) not in reported
    assert "not valid JSON" in reported and "last good version is in use" in reported
    for _ in range(3):
        assert _ask(proxy, "groq/llama-x") == "Echo: hi"  # the stored key, from the last good content
        assert _ask(proxy, "openai/gpt-fake") == "Echo: hi"
    assert proxy.http().get("/v1/models").status_code == 200
    assert upstreams.requests[-2].headers["Authorization"] == "Bearer gsk-stored-0123456789"
    assert len(_auth_errors(proxy)) == 1

    _corrupt(path, b'{"groq": {"type": "api_key", "key": "gsk-fixed-0123456789"}}')
    assert "problems" not in _health_until(proxy, "ok")
    assert _ask(proxy, "groq/llama-x") == "Echo: hi"
    assert upstreams.requests[-1].headers["Authorization"] == "Bearer gsk-fixed-0123456789"


def test_broken_models_json_after_start_is_reported_by_healthz(
    upstreams: FakeOpenAI, isolated_env: Path, start_proxy: StartProxy
) -> None:
    proxy = start_proxy()
    assert _health_until(proxy, "ok")["providers"] > 0
    path = isolated_env / "models.json"
    good = path.read_bytes()
    _corrupt(path, b'{"providers": {"groq": {"baseUrl": 5}}}')
    (reported,) = _health_until(proxy, "degraded")["problems"]
    assert "models.json" in reported and "baseUrl" in reported and "last good version is in use" in reported
    assert _ask(proxy, "openai/gpt-fake") == "Echo: hi"  # the last good routing still serves
    _corrupt(path, good)
    assert "problems" not in _health_until(proxy, "ok")


# --- the CLI ---------------------------------------------------------------------------------------


def _cli_env(isolated_env: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SWITCHBOARD_HOME": str(isolated_env),
        "PYTHONIOENCODING": "utf-8",
        **extra,
    }


def _run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SWITCHBOARD, *args], env=env, input=stdin, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_doctor_reports_a_corrupt_auth_json(kind: str, isolated_env: Path, tmp_path: Path) -> None:
    import json

    data, problem = CORRUPT[kind]
    isolated_env.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = isolated_env / "auth.json"
    path.write_bytes(data)
    env = _cli_env(isolated_env, tmp_path, GROQ_API_KEY="gsk-env-0123456789")

    out = _run(env, "doctor", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["provider"]: r for r in json.loads(out.stdout)}
    assert rows["groq"]["usable"] and rows["groq"]["source"] == "env GROQ_API_KEY"
    (reported,) = rows["groq"]["problems"]
    assert str(path) in reported and problem in reported
    assert all(r["problems"] == [reported] for r in rows.values())

    text = _run(env, "doctor")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"problem: {reported}")
    assert "env GROQ_API_KEY" in text.stdout


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_login_refuses_to_overwrite_a_corrupt_auth_json(kind: str, isolated_env: Path, tmp_path: Path) -> None:
    data, problem = CORRUPT[kind]
    isolated_env.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = isolated_env / "auth.json"
    path.write_bytes(data)
    path.chmod(0o600)
    out = _run(_cli_env(isolated_env, tmp_path), "login", "openai", "--stdin", stdin="sk-new-key-0123456789\n")
    assert out.returncode != 0
    assert str(path) in out.stderr and problem in out.stderr and "nothing was written" in out.stderr, out.stderr
    assert f"mv {path} {path}.broken" in out.stderr
    assert path.read_bytes() == data
    assert "sk-new-key" not in out.stdout + out.stderr
