"""Credential resolution end to end: the ``Authorization`` header the upstream receives.

A built-in provider (Groq) is routed to the fake upstream with a ``models.json`` override, so all four
sources apply: ``--api-key``, ``auth.json``, the env var and the ``models.json`` ``apiKey``.
"""

from __future__ import annotations

import json
import logging
import shlex
import stat
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from providers import keyvalue
from providers.authstore import AuthStore
from providers.credentials import Credentials
from providers.errors import MissingCredentials
from providers.models_json import apply_models_json
from providers.registry import Provider, Registry, load_builtin_providers
from tests.conftest import auth_json, models_json
from tests.fakes.openai_upstream import Action, FakeOpenAI

GROQ_MODEL = "groq/llama-3.3-70b-versatile"
CF_MODEL = "cloudflare-workers-ai/@cf/meta/llama-3.1-8b-instruct"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _fresh_command_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # The !command cache lives for the process; the in-process proxies of these tests share it.
    monkeypatch.setattr(keyvalue, "_cache", {})


def _route_groq(home: Path, fake: FakeOpenAI, **extra: Any) -> Path:
    return models_json(home, {"groq": {"baseUrl": fake.url + "/v1", **extra}})


def _authorization(proxy: Any, fake: FakeOpenAI, model: str = GROQ_MODEL) -> str:
    """Send one chat request through ``proxy``; the Authorization header the upstream received."""
    before = len(fake.requests)
    out = proxy.client().chat.completions.create(model=model, messages=HELLO)
    assert out.choices[0].message.content == "Echo: hello"
    assert len(fake.requests) == before + 1
    return fake.last.headers.get("Authorization", "<none>")


def _error(proxy: Any, model: str = GROQ_MODEL, **body: Any) -> tuple[int, dict[str, Any]]:
    resp = proxy.http().post("/v1/chat/completions", json={"model": model, "messages": HELLO, **body})
    return resp.status_code, resp.json()["error"]


def _counter_command(counter: Path, prefix: str = "sk-rot-") -> str:
    """A !command that prints a new key on every run and counts its runs in ``counter``."""
    c = shlex.quote(str(counter))
    return f"!n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; printf '{prefix}%s' $n"


def _runs(counter: Path) -> int:
    return int(counter.read_text()) if counter.exists() else 0


def _groq() -> Provider:
    provider = Registry(load_builtin_providers()).get("groq")
    assert provider is not None
    return provider


# --- precedence ---------------------------------------------------------------------------------------------


def test_precedence_cli_then_auth_json_then_env_then_models_json(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _route_groq(isolated_env, fake_openai, apiKey="sk-from-models-json")
    auth_json(isolated_env, {"groq": {"type": "api_key", "key": "sk-from-auth-json"}})
    monkeypatch.setenv("GROQ_API_KEY", "sk-from-env")

    proxy = start_proxy(cli_keys={"groq": "sk-from-cli"})
    assert _authorization(proxy, fake_openai) == "Bearer sk-from-cli"
    assert proxy.runtime.credentials.source_of(proxy.runtime.registry.get("groq")) == "--api-key"

    proxy = start_proxy()
    assert _authorization(proxy, fake_openai) == "Bearer sk-from-auth-json"
    assert proxy.runtime.credentials.source_of(proxy.runtime.registry.get("groq")) == "auth.json"

    (isolated_env / "auth.json").unlink()
    proxy = start_proxy()
    assert _authorization(proxy, fake_openai) == "Bearer sk-from-env"
    assert proxy.runtime.credentials.source_of(proxy.runtime.registry.get("groq")) == "env GROQ_API_KEY"

    monkeypatch.delenv("GROQ_API_KEY")
    proxy = start_proxy()
    assert _authorization(proxy, fake_openai) == "Bearer sk-from-models-json"
    assert proxy.runtime.credentials.source_of(proxy.runtime.registry.get("groq")) == "models.json"


def test_empty_env_var_does_not_count(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _route_groq(isolated_env, fake_openai, apiKey="sk-from-models-json")
    monkeypatch.setenv("GROQ_API_KEY", "")
    assert _authorization(start_proxy(), fake_openai) == "Bearer sk-from-models-json"


# --- key value formats in auth.json -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "env", "expected"),
    [
        ("sk-literal-123", {}, "sk-literal-123"),
        ("MY_GROQ_KEY", {"MY_GROQ_KEY": "sk-bare-name"}, "sk-bare-name"),
        ("$MY_GROQ_KEY", {"MY_GROQ_KEY": "sk-dollar"}, "sk-dollar"),
        ("sk-${KEY_PART}-suffix", {"KEY_PART": "braced"}, "sk-braced-suffix"),
        ("!printf sk-from-cmd", {}, "sk-from-cmd"),
        ("!printf %s $MY_GROQ_KEY-via-cmd", {"MY_GROQ_KEY": "sk-env"}, "sk-env-via-cmd"),
    ],
    ids=["literal", "bare-env-name", "dollar-name", "braced-in-string", "command", "command-sees-env"],
)
def test_auth_json_key_formats(
    isolated_env: Path,
    fake_openai: FakeOpenAI,
    start_proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    env: dict[str, str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _route_groq(isolated_env, fake_openai)
    path = auth_json(isolated_env, {"groq": {"type": "api_key", "key": key}})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _authorization(start_proxy(), fake_openai) == f"Bearer {expected}"


def test_auth_json_key_referencing_unset_variable_says_how_to_fix(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    _route_groq(isolated_env, fake_openai)
    auth_json(isolated_env, {"groq": {"type": "api_key", "key": "$NOT_SET_ANYWHERE"}})
    status, err = _error(start_proxy())
    assert status == 401
    assert err["type"] == "authentication_error"
    assert "$SWITCHBOARD_HOME/auth.json" in err["message"] and "switchboard login groq" in err["message"]
    assert fake_openai.requests == []


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666], ids=oct)
def test_command_in_group_or_world_writable_auth_json_is_refused(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, tmp_path: Path, mode: int
) -> None:
    marker = tmp_path / "command-ran"
    _route_groq(isolated_env, fake_openai)
    path = auth_json(
        isolated_env,
        {"groq": {"type": "api_key", "key": f"!touch {shlex.quote(str(marker))}; printf sk-evil"}},
    )
    path.chmod(mode)
    proxy = start_proxy()
    status, err = _error(proxy)
    assert status == 500
    assert err["code"] == "invalid_config"
    assert "$SWITCHBOARD_HOME/auth.json" in err["message"]
    assert "chmod 600" in err["message"]
    # Listing models (which checks availability) does not run it either.
    assert proxy.http().get("/v1/models").status_code == 200
    assert not marker.exists()
    assert fake_openai.requests == []


# --- !command re-run after a 401 ----------------------------------------------------------------------------


def test_command_key_is_rerun_once_after_upstream_401(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    _route_groq(isolated_env, fake_openai)
    auth_json(isolated_env, {"groq": {"type": "api_key", "key": _counter_command(counter)}})
    fake_openai.rejected_keys.add("sk-rot-1")
    proxy = start_proxy()

    out = proxy.client().chat.completions.create(model=GROQ_MODEL, messages=HELLO)
    assert out.choices[0].message.content == "Echo: hello"
    assert [r.headers["Authorization"] for r in fake_openai.requests] == ["Bearer sk-rot-1", "Bearer sk-rot-2"]
    assert _runs(counter) == 2

    # The new key is cached: later requests do not run the command again.
    assert _authorization(proxy, fake_openai) == "Bearer sk-rot-2"
    assert _runs(counter) == 2


def test_command_key_rejected_every_time_gives_the_upstream_401_after_one_retry(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    _route_groq(isolated_env, fake_openai)
    auth_json(isolated_env, {"groq": {"type": "api_key", "key": _counter_command(counter)}})
    fake_openai.rejected_keys.update({"sk-rot-1", "sk-rot-2", "sk-rot-3"})
    proxy = start_proxy()

    with pytest.raises(openai.AuthenticationError) as err:
        proxy.client().chat.completions.create(model=GROQ_MODEL, messages=HELLO)
    assert err.value.status_code == 401
    assert "Incorrect API key provided." in err.value.message
    assert len(fake_openai.requests) == 2
    assert _runs(counter) == 2


def test_non_command_key_is_not_retried_after_401(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "sk-static-key")
    _route_groq(isolated_env, fake_openai)
    fake_openai.rejected_keys.add("sk-static-key")
    status, err = _error(start_proxy())
    assert status == 401
    assert "Incorrect API key provided." in err["message"]
    assert len(fake_openai.requests) == 1


# --- provider-scoped env (Cloudflare) -----------------------------------------------------------------------


def test_auth_json_scoped_env_fills_url_placeholder_and_beats_process_env(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_json(
        isolated_env,
        {"cloudflare-workers-ai": {"baseUrl": fake_openai.url + "/client/v4/accounts/{CLOUDFLARE_ACCOUNT_ID}/ai/v1"}},
    )
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acct-from-process")
    auth_json(
        isolated_env,
        {
            "cloudflare-workers-ai": {
                "type": "api_key",
                "key": "cf-token-123",
                "env": {"CLOUDFLARE_ACCOUNT_ID": "acct-from-auth"},
            }
        },
    )
    assert _authorization(start_proxy(), fake_openai, CF_MODEL) == "Bearer cf-token-123"
    assert fake_openai.last.path == "/client/v4/accounts/acct-from-auth/ai/v1/chat/completions"
    assert fake_openai.last.body["model"] == "@cf/meta/llama-3.1-8b-instruct"

    # Without the scoped value the process env fills it.
    auth_json(isolated_env, {"cloudflare-workers-ai": {"type": "api_key", "key": "cf-token-123"}})
    assert _authorization(start_proxy(), fake_openai, CF_MODEL) == "Bearer cf-token-123"
    assert fake_openai.last.path == "/client/v4/accounts/acct-from-process/ai/v1/chat/completions"


def test_auth_json_entry_with_only_scoped_env_takes_the_key_from_env(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_json(
        isolated_env,
        {"cloudflare-workers-ai": {"baseUrl": fake_openai.url + "/accounts/{CLOUDFLARE_ACCOUNT_ID}/v1"}},
    )
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "cf-env-token")
    auth_json(isolated_env, {"cloudflare-workers-ai": {"env": {"CLOUDFLARE_ACCOUNT_ID": "acct-scoped"}}})
    proxy = start_proxy()
    assert _authorization(proxy, fake_openai, CF_MODEL) == "Bearer cf-env-token"
    assert fake_openai.last.path == "/accounts/acct-scoped/v1/chat/completions"
    cf = proxy.runtime.registry.get("cloudflare-workers-ai")
    assert proxy.runtime.credentials.source_of(cf) == "env CLOUDFLARE_API_KEY"


# --- missing or expired credentials -------------------------------------------------------------------------


def test_missing_key_names_env_var_and_login_command(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    _route_groq(isolated_env, fake_openai)
    status, err = _error(start_proxy())
    assert status == 401
    assert err["type"] == "authentication_error" and err["code"] == "missing_credentials"
    assert "GROQ_API_KEY" in err["message"]
    assert "switchboard login groq" in err["message"]
    assert fake_openai.requests == []


def test_missing_cloudflare_account_id_says_to_set_it(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    models_json(
        isolated_env,
        {"cloudflare-workers-ai": {"baseUrl": fake_openai.url + "/accounts/{CLOUDFLARE_ACCOUNT_ID}/v1"}},
    )
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "cf-token")
    proxy = start_proxy()
    status, err = _error(proxy, CF_MODEL)
    assert status == 401
    assert "CLOUDFLARE_ACCOUNT_ID" in err["message"] and "set" in err["message"]
    assert fake_openai.requests == []
    # Nor is the provider listed as usable.
    ids = [m["id"] for m in proxy.http().get("/v1/models").json()["data"]]
    assert not any(i.startswith("cloudflare-workers-ai/") for i in ids)


def test_expired_oauth_login_says_to_log_in_again(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _route_groq(isolated_env, fake_openai)
    monkeypatch.setenv("GROQ_API_KEY", "sk-env-not-used")  # a stored login owns the provider
    past = int((time.time() - 3600) * 1000)
    auth_json(isolated_env, {"groq": {"type": "oauth", "access": "x", "refresh": "y", "expires": past}})
    status, err = _error(start_proxy())
    assert status == 401
    assert "expired" in err["message"]
    assert "switchboard login groq" in err["message"]
    assert fake_openai.requests == []


def test_valid_oauth_login_sends_the_access_token(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    _route_groq(isolated_env, fake_openai)
    future = int((time.time() + 3600) * 1000)
    auth_json(isolated_env, {"groq": {"type": "oauth", "access": "at-123", "refresh": "rt", "expires": future}})
    proxy = start_proxy()
    assert _authorization(proxy, fake_openai) == "Bearer at-123"
    assert proxy.runtime.credentials.source_of(proxy.runtime.registry.get("groq")) == "auth.json (oauth)"


# --- unit level: Anthropic env order, available() / source_of() ---------------------------------------------


async def test_anthropic_oauth_token_wins_over_api_key(tmp_path: Path) -> None:
    anthropic = Registry(load_builtin_providers()).get("anthropic")
    assert anthropic is not None
    store = AuthStore(tmp_path / "auth.json")

    both = Credentials(store, environ={"ANTHROPIC_OAUTH_TOKEN": "sk-ant-oat01-tok", "ANTHROPIC_API_KEY": "sk-ant-api"})
    assert both.available(anthropic) is True
    assert both.source_of(anthropic) == "env ANTHROPIC_OAUTH_TOKEN"
    auth = await both.resolve(anthropic)
    assert auth.source == "env ANTHROPIC_OAUTH_TOKEN"
    assert auth.base_url == "https://api.anthropic.com"
    # An OAuth token is a bearer token for Anthropic, never an x-api-key.
    assert auth.headers["authorization"] == "Bearer sk-ant-oat01-tok"
    assert "x-api-key" not in auth.headers
    assert not any("sk-ant-api" in v for v in auth.headers.values())

    key_only = Credentials(store, environ={"ANTHROPIC_API_KEY": "sk-ant-api"})
    assert key_only.source_of(anthropic) == "env ANTHROPIC_API_KEY"
    auth = await key_only.resolve(anthropic)
    assert auth.headers["x-api-key"] == "sk-ant-api"
    assert "authorization" not in auth.headers

    neither = Credentials(store, environ={})
    assert neither.available(anthropic) is False and neither.source_of(anthropic) is None
    with pytest.raises(MissingCredentials) as err:
        await neither.resolve(anthropic)
    assert "ANTHROPIC_OAUTH_TOKEN or ANTHROPIC_API_KEY" in err.value.message
    assert "switchboard login anthropic" in err.value.message


async def test_available_and_source_of_never_run_commands_or_return_keys(tmp_path: Path) -> None:
    marker_auth = tmp_path / "auth-command-ran"
    marker_models = tmp_path / "models-command-ran"
    auth_path = tmp_path / "sb" / "auth.json"
    auth_json(
        auth_path.parent,
        {
            "groq": {"type": "api_key", "key": f"!touch {shlex.quote(str(marker_auth))}; printf sk-cmd-secret-1"},
            "cerebras": {"type": "api_key", "key": "sk-auth-literal-secret"},
        },
    )
    models_path = models_json(
        auth_path.parent,
        {
            "local": {
                "baseUrl": "http://127.0.0.1:9/v1",
                "api": "openai-completions",
                "apiKey": f"!touch {shlex.quote(str(marker_models))}; printf sk-cmd-secret-2",
            },
            "ollama": {"baseUrl": "http://127.0.0.1:11434/v1", "api": "openai-completions"},
            "needs-var": {"baseUrl": "http://127.0.0.1:9/v1", "api": "openai-completions", "apiKey": "$UNSET_VAR"},
            "xai": {"apiKey": "sk-models-literal-secret"},
        },
    )
    registry = apply_models_json(Registry(load_builtin_providers()), models_path)
    creds = Credentials(
        AuthStore(auth_path),
        cli_keys={"deepseek": "sk-cli-secret"},
        models_json_path=models_path,
        environ={"OPENAI_API_KEY": "sk-env-secret"},
    )
    expected = {
        "groq": "auth.json",
        "cerebras": "auth.json",
        "deepseek": "--api-key",
        "openai": "env OPENAI_API_KEY",
        "local": "models.json",
        "xai": "models.json",
        "ollama": "none needed",
        "needs-var": None,
        "mistral": None,
    }
    secrets = ["sk-cmd-secret", "sk-auth-literal-secret", "sk-cli-secret", "sk-env-secret", "sk-models-literal"]
    for pid, source in expected.items():
        provider = registry.get(pid)
        assert provider is not None
        assert creds.available(provider) is (source is not None), pid
        assert creds.source_of(provider) == source, pid
    every = [creds.source_of(p) for p in registry] + [repr(creds.available(p)) for p in registry]
    assert not any(s and secret in s for s in every for secret in secrets)
    assert not marker_auth.exists() and not marker_models.exists()

    # Resolving does run them, which proves the markers would have shown a run.
    groq = registry.get("groq")
    assert groq is not None
    auth = await creds.resolve(groq)
    assert auth.headers["authorization"] == "Bearer sk-cmd-secret-1"
    assert auth.source == "auth.json" and "sk-cmd" not in auth.source
    assert marker_auth.exists()


def test_availability_follows_what_resolve_would_do(tmp_path: Path) -> None:
    """An auth.json key that cannot resolve owns the provider: no silent fallback, and not listed."""
    auth_path = tmp_path / "auth.json"
    auth_json(tmp_path, {"groq": {"type": "api_key", "key": "$UNSET_VAR"}})
    creds = Credentials(AuthStore(auth_path), environ={"GROQ_API_KEY": "sk-env"})
    groq = _groq()
    assert creds.available(groq) is False
    assert creds.source_of(groq) is None
    # With the variable set (here only in the entry's scoped env) it resolves and is reported.
    auth_json(tmp_path, {"groq": {"type": "api_key", "key": "$GROQ_TOKEN", "env": {"GROQ_TOKEN": "sk-scoped"}}})
    creds.invalidate()
    assert creds.available(groq) is True
    assert creds.source_of(groq) == "auth.json"


# --- the config watcher -------------------------------------------------------------------------------------


def test_new_auth_json_key_is_picked_up_by_a_running_proxy(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any
) -> None:
    _route_groq(isolated_env, fake_openai)
    path = auth_json(isolated_env, {"groq": {"type": "api_key", "key": "sk-old-key"}})
    proxy = start_proxy()
    assert _authorization(proxy, fake_openai) == "Bearer sk-old-key"

    before = path.stat().st_mtime_ns
    auth_json(isolated_env, {"groq": {"type": "api_key", "key": "sk-new-key"}})
    assert path.stat().st_mtime_ns != before
    deadline = time.monotonic() + 6
    seen = "Bearer sk-old-key"
    while seen == "Bearer sk-old-key" and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = _authorization(proxy, fake_openai)
    assert seen == "Bearer sk-new-key"
    assert any("reloaded configuration" in r.getMessage() for r in proxy.logs)


# --- secrets never leak -------------------------------------------------------------------------------------


def _all_log_text(records: list[logging.LogRecord]) -> str:
    fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(fmt.format(r) for r in records)


def test_no_secret_in_error_bodies_or_logs(
    isolated_env: Path,
    fake_openai: FakeOpenAI,
    start_proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    env_key = "sk-env-SECRET-0123456789abcdef"
    models_key = "sk-models-SECRET-0123456789abcdef"
    cmd_key = "sk-cmd-SECRET-0123456789abcdef"
    counter = tmp_path / "counter"
    monkeypatch.setenv("GROQ_API_KEY", env_key)
    models_json(
        isolated_env,
        {
            "groq": {"baseUrl": fake_openai.url + "/v1"},
            "local": {"baseUrl": fake_openai.url + "/v1", "api": "openai-completions", "apiKey": models_key},
            "rot": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "apiKey": _counter_command(counter, cmd_key + "-"),
            },
        },
    )
    proxy = start_proxy()
    bodies: list[str] = []

    def fail(model: str, action: Action | None, status: int, **body: Any) -> None:
        if action is not None:
            fake_openai.push(action)
        resp = proxy.http().post("/v1/chat/completions", json={"model": model, "messages": HELLO, **body})
        assert resp.status_code == status, resp.text
        bodies.append(resp.text)

    def echo(status: int, secret: str) -> Action:
        message = f"Incorrect API key provided: {secret}. Authorization: Bearer {secret}"
        return Action("error", status=status, body={"error": {"message": message, "type": "invalid_request_error"}})

    fail("groq/llama-3.3-70b-versatile", echo(401, env_key), 401)
    fail("groq/llama-3.3-70b-versatile", echo(500, env_key), 500, stream=True)
    fail("local/gpt-fake", echo(403, models_key), 403)
    fail("local/gpt-fake", echo(400, models_key), 400)
    fake_openai.rejected_keys.update({f"{cmd_key}-1", f"{cmd_key}-2"})
    fail("rot/gpt-fake", None, 401)
    fake_openai.rejected_keys.clear()
    fail("rot/gpt-fake", echo(429, f"{cmd_key}-2"), 429)  # the cached second key, echoed
    monkeypatch.delenv("GROQ_API_KEY")
    proxy.runtime.credentials.invalidate()
    fail("groq/llama-3.3-70b-versatile", None, 401)

    # The upstream really did see (and echo) the keys, so the scrubbing was exercised.
    sent = {r.headers.get("Authorization") for r in fake_openai.requests}
    assert {f"Bearer {env_key}", f"Bearer {models_key}", f"Bearer {cmd_key}-2"} <= sent
    assert all(json.loads(b)["error"]["message"] for b in bodies)
    assert any("***" in b for b in bodies)
    logs = _all_log_text(proxy.logs)
    assert "upstream groq answered 401" in logs  # the log capture works
    for secret in (env_key, models_key, cmd_key):
        for body in bodies:
            assert secret not in body
        assert secret not in logs
