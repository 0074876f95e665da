"""The ``switchboard`` command, run as a real subprocess with a controlled environment.

Each run gets only PATH, HOME and SWITCHBOARD_HOME (both under ``tmp_path``) plus the provider
variables a test sets, so no credential of the machine leaks in; every run has a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from providers.extensions import active
from providers.registry import load_builtin_models
from tests.conftest import models_json, write_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import free_port

GROQ_KEY = "gsk-cli-secret-7d3e9b21"
DEEPSEEK_KEY = "sk-deepseek-cli-secret-0c4a"
GROQ_IDS = {f"groq/{m.id}" for m in load_builtin_models("groq")}
DEEPSEEK_IDS = {f"deepseek/{m.id}" for m in load_builtin_models("deepseek")}
PROVIDERS = active().providers  # built-ins and the installed extensions (examples/switchboard-acme)

_SCRIPT = shutil.which("switchboard", path=str(Path(sys.executable).parent))
SWITCHBOARD = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "proxy"]


@pytest.fixture
def env(tmp_path: Path, isolated_env: Path) -> dict[str, str]:
    """The whole environment of the subprocess (not os.environ: nothing from the machine)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "SWITCHBOARD_HOME": str(isolated_env),
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def run(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SWITCHBOARD, *args], env=env, capture_output=True, text=True, timeout=timeout)


def table_rows(stdout: str) -> tuple[list[str], list[str]]:
    lines = stdout.splitlines()
    return lines[0].split("  "), [line.split()[0] for line in lines[1:] if line.strip()]


# --- switchboard models ------------------------------------------------------------------------------


def test_models_prints_a_table_of_providers_with_credentials(env: dict[str, str]) -> None:
    assert GROQ_IDS and DEEPSEEK_IDS
    out = run({**env, "GROQ_API_KEY": GROQ_KEY, "DEEPSEEK_API_KEY": DEEPSEEK_KEY}, "models")
    assert out.returncode == 0, out.stderr
    header, ids = table_rows(out.stdout)
    assert [h.strip() for h in header if h.strip()] == [
        "MODEL",
        "CONTEXT",
        "MAX OUT",
        "IN $/M",
        "OUT $/M",
        "REASONING",
        "IMAGES",
    ]
    assert set(ids) == GROQ_IDS | DEEPSEEK_IDS and len(ids) == len(GROQ_IDS | DEEPSEEK_IDS)
    row = next(line for line in out.stdout.splitlines() if line.startswith("groq/llama-3.3-70b-versatile "))
    assert row.split()[1:3] == ["131,072", "32,768"]
    assert GROQ_KEY not in out.stdout + out.stderr and DEEPSEEK_KEY not in out.stdout + out.stderr
    # Columns line up: every row starts its second column where the header does.
    col = out.stdout.splitlines()[0].index("CONTEXT")
    for line in out.stdout.splitlines()[1:]:
        assert line[col - 2 : col] == "  " and line[col] != " ", line


def test_models_provider_filter(env: dict[str, str]) -> None:
    out = run({**env, "GROQ_API_KEY": GROQ_KEY, "DEEPSEEK_API_KEY": DEEPSEEK_KEY}, "models", "--provider", "groq")
    assert out.returncode == 0, out.stderr
    assert set(table_rows(out.stdout)[1]) == GROQ_IDS
    assert out.stderr == ""  # groq has credentials: nothing to report


def test_models_lists_providers_without_credentials_on_stderr(env: dict[str, str]) -> None:
    out = run({**env, "GROQ_API_KEY": GROQ_KEY}, "models")
    assert out.returncode == 0, out.stderr
    assert set(table_rows(out.stdout)[1]) == GROQ_IDS
    assert f"{len(GROQ_IDS)} models. Providers without credentials:" in out.stderr
    missing = {line.split()[0]: line.split(None, 1)[1] for line in out.stderr.splitlines() if line.startswith("  ")}
    assert set(missing) == {p.id for p in PROVIDERS} - {"groq"}
    assert missing["openai"] == "OPENAI_API_KEY"
    assert missing["anthropic"] == "ANTHROPIC_OAUTH_TOKEN or ANTHROPIC_API_KEY"
    # An account id is needed as well as the key, not instead of it.
    assert missing["cloudflare-workers-ai"] == "CLOUDFLARE_API_KEY (and CLOUDFLARE_ACCOUNT_ID)"
    assert GROQ_KEY not in out.stdout + out.stderr


def test_models_filter_on_a_provider_without_credentials(env: dict[str, str]) -> None:
    out = run(env, "models", "--provider", "groq")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("MODEL") and len(out.stdout.splitlines()) == 1
    assert "  groq " in out.stderr and "GROQ_API_KEY" in out.stderr
    assert "openai" not in out.stderr


def test_models_json_has_the_v1_models_shape(env: dict[str, str], isolated_env: Path) -> None:
    write_json(isolated_env / "config.json", {"aliases": {"fast": "groq/llama-3.3-70b-versatile"}})
    out = run({**env, "GROQ_API_KEY": GROQ_KEY}, "models", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["object"] == "list"
    models = {e["id"]: e for e in body["data"]}
    assert set(models) == GROQ_IDS | {"fast"}
    entry = models["groq/llama-3.3-70b-versatile"]
    assert entry["object"] == "model" and entry["owned_by"] == "groq" and isinstance(entry["created"], int)
    assert entry["context_window"] == 131072 and entry["source"] == "catalog"
    assert set(entry["pricing"]) >= {"input", "output", "unit"}
    assert models["fast"]["alias_of"] == "groq/llama-3.3-70b-versatile"
    assert GROQ_KEY not in out.stdout + out.stderr


def test_models_unknown_provider_exits_2(env: dict[str, str]) -> None:
    out = run(env, "models", "--provider", "grok")
    assert out.returncode == 2
    assert "unknown provider 'grok'" in out.stderr and "groq" in out.stderr
    assert "Traceback" not in out.stderr


def test_models_reports_a_broken_models_json(env: dict[str, str], isolated_env: Path) -> None:
    write_json(isolated_env / "models.json", {"providers": {"groq": {"baseURL": "x"}}})
    out = run(env, "models")
    assert out.returncode == 2
    assert "models.json" in out.stderr and "baseURL" in out.stderr and "Traceback" not in out.stderr


# --- switchboard serve: refusals ---------------------------------------------------------------------


def test_serve_refuses_a_public_address_without_insecure_no_auth(env: dict[str, str]) -> None:
    out = run(env, "serve", "--host", "0.0.0.0", "--port", str(free_port()), timeout=15)
    assert out.returncode == 2
    assert "--insecure-no-auth" in out.stderr and "0.0.0.0" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_api_key_for_a_misspelt_provider_suggests_the_right_one(env: dict[str, str]) -> None:
    out = run(env, "serve", "--api-key", f"groqq={GROQ_KEY}", "--port", str(free_port()), timeout=15)
    assert out.returncode == 2
    assert "'groqq'" in out.stderr and "did you mean 'groq'?" in out.stderr
    assert GROQ_KEY not in out.stderr


@pytest.mark.parametrize("arg", ["novalue", "groq=", f"={GROQ_KEY}", GROQ_KEY])
def test_serve_api_key_without_provider_and_key_exits_2(env: dict[str, str], arg: str) -> None:
    out = run(env, "serve", "--api-key", arg, "--port", str(free_port()), timeout=15)
    assert out.returncode == 2
    assert "--api-key expects PROVIDER=KEY" in out.stderr
    assert GROQ_KEY not in out.stderr, "a bare key passed by mistake must not be echoed"
    assert "Traceback" not in out.stderr


def test_python_m_proxy_help(env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-m", "proxy", "--help"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: switchboard")
    assert "serve" in out.stdout and "models" in out.stdout
    serve = run(env, "serve", "--help")
    assert serve.returncode == 0 and "--insecure-no-auth" in serve.stdout and "--api-key" in serve.stdout


# --- switchboard serve: a running server -------------------------------------------------------------


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    @property
    def stderr(self) -> str:
        return self.log.read_text()


@pytest.fixture
def serve(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., tuple[Server, float]]]:
    """Start ``switchboard serve`` and wait for /healthz; returns the server and its startup time."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> tuple[Server, float]:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        t0 = time.perf_counter()
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [*SWITCHBOARD, "serve", "--port", str(port), *args],
                env={**env, **(extra_env or {})},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        server = Server(proc, f"http://127.0.0.1:{port}", log)
        with httpx.Client(timeout=1) as http:
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"serve exited with {proc.returncode}: {server.stderr}")
                try:
                    if http.get(server.url + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - t0 > 15:
                    raise AssertionError(f"serve not ready after 15 s: {server.stderr}")
                time.sleep(0.02)
        return server, time.perf_counter() - t0

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _stop(server: Server, sig: int = signal.SIGTERM) -> tuple[int, float]:
    t0 = time.perf_counter()
    server.proc.send_signal(sig)
    code = server.proc.wait(10)
    return code, time.perf_counter() - t0


def test_serve_answers_healthz_models_and_chat(
    serve: Callable[..., tuple[Server, float]], env: dict[str, str], isolated_env: Path, fake_openai: FakeOpenAI
) -> None:
    # groq is routed to the fake upstream, so the background discovery stays on loopback too.
    models_json(isolated_env, {"groq": {"baseUrl": fake_openai.url + "/openai/v1"}})
    fake_openai.models = ["fresh-from-discovery"]
    server, startup = serve(extra_env={"GROQ_API_KEY": GROQ_KEY})
    print(f"\nswitchboard serve answered /healthz {startup * 1000:.0f} ms after the process started")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        health = http.get("/healthz").json()
        assert health["status"] == "ok" and health["providers"] == len(PROVIDERS)
        deadline = time.monotonic() + 10
        while True:
            listed = {e["id"]: e for e in http.get("/v1/models").json()["data"]}
            if "groq/fresh-from-discovery" in listed or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert set(listed) == GROQ_IDS | {"groq/fresh-from-discovery"}
        assert listed["groq/fresh-from-discovery"]["source"] == "discovered"
        reply = http.post(
            "/v1/chat/completions",
            json={"model": "groq/llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "ping"}]},
        )
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "Echo: ping"
    assert fake_openai.last.headers["Authorization"] == f"Bearer {GROQ_KEY}"

    # `switchboard models --json` describes the same models as the server's /v1/models.
    cli = run({**env, "GROQ_API_KEY": GROQ_KEY}, "models", "--json")
    assert cli.returncode == 0, cli.stderr

    def strip_created(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "created"} for e in entries]

    assert strip_created(json.loads(cli.stdout)["data"]) == strip_created(list(listed.values()))

    code, took = _stop(server)
    assert code == 0, server.stderr
    assert took < 5
    assert "providers with credentials: groq" in server.stderr
    assert GROQ_KEY not in server.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_cleanly_on_signal(
    serve: Callable[..., tuple[Server, float]], isolated_env: Path, sig: int
) -> None:
    write_json(isolated_env / "config.json", {"discovery": {"enabled": False}})
    server, _ = serve()
    code, took = _stop(server, sig)
    assert code == 0, f"exit {code}: {server.stderr}"
    assert took < 5
    assert "Traceback" not in server.stderr and "KeyboardInterrupt" not in server.stderr
    with pytest.raises(httpx.TransportError), httpx.Client(timeout=1) as http:
        http.get(server.url + "/healthz")


def test_serve_on_a_public_address_with_insecure_no_auth(
    serve: Callable[..., tuple[Server, float]], isolated_env: Path
) -> None:
    write_json(isolated_env / "config.json", {"discovery": {"enabled": False}})
    server, _ = serve("--host", "0.0.0.0", "--insecure-no-auth")
    assert "switchboard starting on http://0.0.0.0:" in server.stderr
    code, _ = _stop(server)
    assert code == 0, server.stderr


def test_serve_on_a_public_address_with_a_master_key_from_config(
    serve: Callable[..., tuple[Server, float]], isolated_env: Path
) -> None:
    """A master key lets the gateway bind every interface; config.json's ``$VAR`` form is resolved, and
    the key then opens the admin API (and only it: a client without a key is refused)."""
    master = "sk-sb-master-from-var-0123456789"
    write_json(isolated_env / "config.json", {"discovery": {"enabled": False}, "master_key": "$MY_MASTER"})
    server, _ = serve("--host", "0.0.0.0", extra_env={"MY_MASTER": master})
    assert "switchboard starting on http://0.0.0.0:" in server.stderr
    assert "--insecure-no-auth" not in server.stderr
    with httpx.Client(timeout=10) as http:
        assert http.get(server.url + "/admin/v1/keys", headers={"Authorization": f"Bearer {master}"}).status_code == 200
        assert http.get(server.url + "/v1/models").status_code == 401
    assert master not in server.stderr
    code, _ = _stop(server)
    assert code == 0, server.stderr


def test_master_key_forms(isolated_env: Path, tmp_path: Path) -> None:
    from providers.errors import ConfigError
    from proxy.config import Paths, ServerConfig
    from proxy.gateway.gateway import master_key_value

    paths = Paths(isolated_env)
    write_json(isolated_env / "config.json", {})
    assert master_key_value(ServerConfig(), paths, {}) is None
    literal = "sk-sb-master-literal-0123456789"
    assert master_key_value(ServerConfig(master_key=literal), paths, {}) == literal
    # The environment's value is a literal and wins over the file.
    env_key = "sk-sb-master-env-0123456789abcd"
    assert master_key_value(ServerConfig(master_key=literal), paths, {"SWITCHBOARD_MASTER_KEY": env_key}) == env_key
    assert master_key_value(ServerConfig(master_key="$MK"), paths, {"MK": literal}) == literal
    # A !command runs only from a config.json the operator alone can write.
    command = ServerConfig(master_key=f"!printf {literal}")
    assert master_key_value(command, paths, {}) == literal
    (isolated_env / "config.json").chmod(0o666)
    with pytest.raises(ConfigError):
        master_key_value(command, paths, {})
    with pytest.raises(ConfigError, match="shorter than 16"):
        master_key_value(ServerConfig(master_key="short"), paths, {})
    with pytest.raises(ConfigError, match="does not resolve"):
        master_key_value(ServerConfig(master_key="$UNSET_MK"), paths, {})
