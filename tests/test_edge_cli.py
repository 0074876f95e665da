"""``switchboard serve`` flags that decide who sees a key and who may spend it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from proxy.cli import main
from tests.conftest import models_json, write_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.serve_process import DEADLINE, Served, start_served

KEY = "gsk-edge-cli-secret-51f0c2"


@pytest.fixture
def serve(isolated_env: Path, tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[Callable[..., Served]]:
    models_json(isolated_env, {"groq": {"baseUrl": fake_openai.url + "/openai/v1"}})
    write_json(isolated_env / "config.json", {"discovery": {"enabled": False}})
    started: list[Served] = []

    def start(*args: str, stdin: str | None = None) -> Served:
        # An empty stdin when none is given: the server must not wait for a key on it.
        served = start_served(tmp_path, None, args, stdin if stdin is not None else "")
        started.append(served)
        return served

    yield start
    for served in started:
        served.proc.terminate()
        served.proc.wait(DEADLINE)


def _keyfile(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _chat_uses_key(served: Served, fake: FakeOpenAI) -> None:
    chat = {"model": "groq/llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "ping"}]}
    assert httpx.post(served.url + "/v1/chat/completions", json=chat, timeout=DEADLINE).status_code == 200
    assert fake.last.headers["Authorization"] == f"Bearer {KEY}"
    cmdline = Path(f"/proc/{served.proc.pid}/cmdline").read_bytes()
    assert KEY.encode() not in cmdline


def test_api_key_from_a_file(serve, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    keyfile = _keyfile(tmp_path / "groq.key", f"  {KEY}\n")
    _chat_uses_key(serve("--api-key", f"groq=@{keyfile}"), fake_openai)


def test_api_key_from_stdin(serve, fake_openai: FakeOpenAI) -> None:
    _chat_uses_key(serve("--api-key", "groq=-", stdin=f"{KEY}\n"), fake_openai)


def test_insecure_no_auth_warns_that_anyone_can_spend_credits(serve) -> None:
    served = serve("--insecure-no-auth")
    assert "WARNING" in served.output and "anyone who can reach" in served.output


def test_api_key_file_readable_by_others_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keyfile = _keyfile(tmp_path / "groq.key", KEY, 0o644)
    assert main(["serve", "--api-key", f"groq=@{keyfile}"]) == 2
    err = capsys.readouterr().err
    assert f"chmod 600 {keyfile}" in err and KEY not in err


@pytest.mark.parametrize("content", [None, "\n"])
def test_api_key_file_missing_or_empty_is_refused(tmp_path: Path, capsys, content: str | None) -> None:
    keyfile = tmp_path / "groq.key"
    if content is not None:
        _keyfile(keyfile, content)
    assert main(["serve", "--api-key", f"groq=@{keyfile}"]) == 2
    err = capsys.readouterr().err
    assert str(keyfile) in err and ("cannot read" in err or "empty" in err)


def test_serve_help_warns_about_keys_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "/proc/PID/cmdline" in out and "PROVIDER=@FILE" in out and "PROVIDER=-" in out
    assert "spends your provider credits" in out
