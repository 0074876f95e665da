"""``!command`` key values run only from a file nobody else could have written, judged on what was read.

The ownership/permission check and the read used to be separate steps on the path: whoever could write
``SWITCHBOARD_HOME`` (or the file) could swap files between them and have a command run as the server's
user. Now the directory and the file are checked with ``fstat`` on the descriptors the content is read
from (``O_NOFOLLOW``), and the verdict travels with the content. Every test drives the real proxy or
the real CLI; the command would leave a marker file if it ran.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Proxy, auth_json, models_json, write_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_cli_auth import SWITCHBOARD

StartProxy = Callable[..., Proxy]
HI = [{"role": "user", "content": "hi"}]
KEY = "gsk-from-command-0123456789"
NOBODY = 65534


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "command-ran"


def _command(marker: Path) -> str:
    return f"!touch {marker} && echo {KEY}"


def _groq_at(sb_home: Path, fake: FakeOpenAI) -> None:
    models_json(sb_home, {"groq": {"baseUrl": fake.url + "/openai/v1"}})


def _refused(proxy: Proxy, model: str = "groq/llama-x") -> str:
    with pytest.raises(openai.InternalServerError) as err:
        proxy.client().chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
    body: Any = err.value.body
    assert body["type"] == "config_error", body
    return str(body["message"])


def _warnings(proxy: Proxy) -> list[str]:
    return [r.getMessage() for r in proxy.logs if r.levelno == logging.WARNING and "!command" in r.getMessage()]


def test_symlinked_auth_json_runs_no_command(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: StartProxy, marker: Path, tmp_path: Path
) -> None:
    _groq_at(isolated_env, fake_openai)
    real = write_json(tmp_path / "elsewhere" / "auth.json", {"groq": {"type": "api_key", "key": _command(marker)}})
    (isolated_env / "auth.json").symlink_to(real)
    proxy = start_proxy()
    message = _refused(proxy)
    assert "is a symbolic link" in message and "replace it with the file itself" in message
    assert not marker.exists()
    assert fake_openai.requests == []


def test_symlinked_auth_json_still_serves_plain_keys(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: StartProxy, tmp_path: Path
) -> None:
    _groq_at(isolated_env, fake_openai)
    real = write_json(tmp_path / "dotfiles" / "auth.json", {"groq": {"type": "api_key", "key": "gsk-plain-0123456789"}})
    (isolated_env / "auth.json").symlink_to(real)
    answer = start_proxy().client().chat.completions.create(model="groq/llama-x", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Echo: hi"
    assert fake_openai.last.headers["Authorization"] == "Bearer gsk-plain-0123456789"


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777], ids=oct)
@pytest.mark.parametrize("where", ["auth.json", "models.json"])
def test_writable_directory_runs_no_command(
    where: str,
    mode: int,
    isolated_env: Path,
    fake_openai: FakeOpenAI,
    start_proxy: StartProxy,
    marker: Path,
    tmp_path: Path,
) -> None:
    if where == "auth.json":
        _groq_at(isolated_env, fake_openai)
        auth_json(isolated_env, {"groq": {"type": "api_key", "key": _command(marker)}})
        model = "groq/llama-x"
    else:
        models_json(
            isolated_env,
            {"mine": {"baseUrl": fake_openai.url + "/v1", "api": "openai-completions", "apiKey": _command(marker)}},
        )
        model = "mine/m1"
    isolated_env.chmod(mode)
    proxy = start_proxy()
    message = _refused(proxy, model)
    # The client sees the home directory masked; the server log names it.
    assert "is writable by group or others" in message and "chmod 700" in message
    assert not marker.exists()
    _refused(proxy, model)
    warnings = _warnings(proxy)
    assert len(warnings) == 1 and f"chmod 700 {isolated_env}" in warnings[0], warnings  # logged once, not per request

    if where == "auth.json":
        doctor = _doctor(isolated_env, tmp_path)
        assert not doctor["groq"]["usable"] and f"chmod 700 {isolated_env}" in doctor["groq"]["fix"]
        assert not marker.exists()


def test_sticky_shared_directory_still_runs_commands(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: StartProxy, marker: Path
) -> None:
    """Like /tmp: others may add files but not replace this one, so the command may run."""
    _groq_at(isolated_env, fake_openai)
    auth_json(isolated_env, {"groq": {"type": "api_key", "key": _command(marker)}})
    isolated_env.chmod(0o1777)
    answer = start_proxy().client().chat.completions.create(model="groq/llama-x", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Echo: hi" and marker.exists()
    assert fake_openai.last.headers["Authorization"] == f"Bearer {KEY}"


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand files to another user")


@needs_root
@pytest.mark.parametrize("owned", ["directory", "file"])
def test_owned_by_another_user_runs_no_command(
    owned: str, isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: StartProxy, marker: Path
) -> None:
    _groq_at(isolated_env, fake_openai)
    path = auth_json(isolated_env, {"groq": {"type": "api_key", "key": _command(marker)}})
    os.chown(isolated_env if owned == "directory" else path, NOBODY, -1)
    message = _refused(start_proxy())
    assert f"uid {NOBODY}" in message
    assert not marker.exists()


def test_the_verdict_belongs_to_the_content_that_was_read(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: StartProxy, marker: Path, tmp_path: Path
) -> None:
    """Read a file others can write, then put a proper 0600 file in its place before the command runs.

    The swap keeps the modification time, so the running proxy does not reload: the command it holds
    is the one it read from the writable file. A check of the path at run time would pass (the path is
    now a proper file); the verdict taken on the descriptor that was read refuses it."""
    _groq_at(isolated_env, fake_openai)
    path = write_json(isolated_env / "auth.json", {"groq": {"type": "api_key", "key": _command(marker)}}, mode=0o666)
    proxy = start_proxy()
    assert proxy.http().get("/v1/models").status_code == 200  # lists providers: auth.json has been read
    mtime = path.stat().st_mtime_ns
    proper = write_json(isolated_env / "auth.json.new", {"groq": {"type": "api_key", "key": _command(marker)}})
    os.utime(proper, ns=(mtime, mtime))
    os.replace(proper, path)
    assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_mtime_ns == mtime
    message = _refused(proxy)
    assert "auth.json is writable by group or others; chmod 600" in message
    assert not marker.exists()
    assert any(f"chmod 600 {path}" in w for w in _warnings(proxy))


def test_a_fifo_does_not_hang_the_proxy(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: StartProxy) -> None:
    """A FIFO in place of auth.json: opened without blocking and refused as not a regular file."""
    _groq_at(isolated_env, fake_openai)
    os.mkfifo(isolated_env / "auth.json", 0o600)
    proxy = start_proxy()
    health = proxy.http().get("/healthz").json()
    assert health["status"] == "degraded" and "not a regular file" in health["problems"][0]


def _doctor(sb_home: Path, tmp_path: Path) -> dict[str, Any]:
    home = tmp_path / "cli-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "SWITCHBOARD_HOME": str(sb_home)}
    out = subprocess.run([*SWITCHBOARD, "doctor", "--json"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return {r["provider"]: r for r in json.loads(out.stdout)}


@pytest.mark.parametrize(("mode", "seen"), [(0o600, "from-auth-json"), (0o666, "unset")], ids=["0600", "0666"])
def test_auth_json_env_reaches_models_json_commands_only_from_a_safe_file(
    mode: int, seen: str, isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: StartProxy
) -> None:
    """A models.json ``!command`` runs with its provider's auth.json ``env`` (PATH, say) only when auth.json
    is as safe as the command's own file."""
    # Unique per case: command output is cached per command string for the process lifetime.
    command = f'!printf "%s-key-0123456789" "${{SB_RACE_VAR:-unset}}" # {mode:o}'
    models_json(
        isolated_env,
        {"mine": {"baseUrl": fake_openai.url + "/v1", "api": "openai-completions", "apiKey": command}},
    )
    write_json(isolated_env / "auth.json", {"mine": {"env": {"SB_RACE_VAR": "from-auth-json"}}}, mode=mode)
    answer = start_proxy().client().chat.completions.create(model="mine/m1", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Echo: hi"
    assert fake_openai.last.headers["Authorization"] == f"Bearer {seen}-key-0123456789"
