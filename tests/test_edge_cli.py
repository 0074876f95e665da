"""``switchboard serve`` flags that decide who sees a key and who may spend it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from proxy.cli import main
from tests.conftest import models_json, write_json
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import free_port

ROOT = Path(__file__).resolve().parents[1]
KEY = "gsk-edge-cli-secret-51f0c2"
DEADLINE = 30.0


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    @property
    def stderr(self) -> str:
        return self.log.read_text()


@pytest.fixture
def serve(isolated_env: Path, tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[Callable[..., Served]]:
    models_json(isolated_env, {"groq": {"baseUrl": fake_openai.url + "/openai/v1"}})
    write_json(isolated_env / "config.json", {"discovery": {"enabled": False}})
    started: list[Served] = []

    def start(*args: str, stdin: str | None = None) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        with log.open("w") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "proxy", "serve", "--port", str(port), *args],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
            )
        assert proc.stdin is not None
        if stdin is not None:
            proc.stdin.write(stdin)
        proc.stdin.close()
        served = Served(proc, f"http://127.0.0.1:{port}", log)
        started.append(served)
        deadline = time.monotonic() + DEADLINE
        while True:
            assert proc.poll() is None, served.stderr
            try:
                if httpx.get(served.url + "/healthz").status_code == 200:
                    return served
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, served.stderr
            time.sleep(0.02)

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
    assert "WARNING" in served.stderr and "anyone who can reach" in served.stderr


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
