"""The authorization-code grant the Codex and Claude logins share (providers/oauth/authcode.py), through the
real CLI on a pseudo-terminal: an unreachable token endpoint is one login failure for both, reported
without a traceback (the refresh side of the shared rule is tested through a live proxy in test_codex.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.server import free_port
from tests.test_cli_auth import SWITCHBOARD, Term


@pytest.fixture
def cli_env(tmp_path: Path, isolated_env: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "SWITCHBOARD_HOME": str(isolated_env),
        "SWITCHBOARD_NO_BROWSER": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TERM": "dumb",
    }


@pytest.mark.parametrize(
    ("provider", "env_name", "dead_url", "prompt"),
    [
        ("openai-codex", "SWITCHBOARD_CODEX_AUTH_BASE", "http://127.0.0.1:{port}", "Paste the redirect URL"),
        ("anthropic", "SWITCHBOARD_CLAUDE_TOKEN_URL", "http://127.0.0.1:{port}/v1/oauth/token", "Paste the auth"),
    ],
)
def test_unreachable_token_endpoint_is_a_clear_login_failure(
    cli_env: dict[str, str], isolated_env: Path, provider: str, env_name: str, dead_url: str, prompt: str
) -> None:
    dead = dead_url.format(port=free_port())
    env = {
        **cli_env,
        env_name: dead,
        "SWITCHBOARD_CODEX_CALLBACK_PORT": str(free_port()),
        "SWITCHBOARD_CLAUDE_CALLBACK_PORT": str(free_port()),
    }
    t = Term([*SWITCHBOARD, "login", provider], env)
    if provider == "anthropic":
        t.expect("Number or id (Enter to cancel): ")
        t.send("1")  # the Claude Pro/Max subscription, listed before the API key
    t.expect(prompt)
    t.send("pasted-code")
    assert t.wait() == 1, t.output
    assert "could not reach" in t.output and "/oauth/token" in t.output, t.output
    assert "Traceback" not in t.output
    assert not (isolated_env / "auth.json").exists()
