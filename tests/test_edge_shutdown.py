"""Stopping ``switchboard serve`` (a real subprocess) while a slow stream is in flight."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import local_provider, write_json
from tests.fakes.openai_upstream import Action, FakeOpenAI
from tests.fakes.server import free_port

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 30.0
#: The fake's slow stream sends 400 ticks over ~10 s; the last one means the stream ran to its end.
LAST_TICK = "tick 399"


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(DEADLINE)
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_for_log(self, needle: str) -> None:
        _poll(lambda: any(needle in line for line in self.log), f"{needle!r} in the server log")

    def exit_code(self) -> int:
        try:
            return self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within {DEADLINE}s; log: {''.join(self.log)}")


class Stream(threading.Thread):
    """One streamed chat completion read to its end in the background."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.body = ""
        self.first = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        chat = {"model": "local/m", "messages": [{"role": "user", "content": "x"}], "stream": True}
        try:
            with httpx.stream("POST", self.url + "/v1/chat/completions", json=chat, timeout=DEADLINE) as resp:
                for text in resp.iter_text():
                    self.body += text
                    self.first.set()
        except httpx.HTTPError as exc:
            self.error = exc
        self.first.set()

    def started(self) -> None:
        assert self.first.wait(DEADLINE) and self.error is None, self.error

    def ended(self) -> str:
        self.join(DEADLINE)
        assert not self.is_alive(), "the client's stream did not end"
        return self.body


def _poll(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def serve(isolated_env: Path, fake_openai: FakeOpenAI) -> Iterator:
    local_provider(isolated_env, fake_openai)
    started: list[Served] = []

    def start(shutdown: float) -> Served:
        write_json(isolated_env / "config.json", {"timeouts": {"shutdown": shutdown}, "discovery": {"enabled": False}})
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--port", str(port)],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        served = Served(proc, f"http://127.0.0.1:{port}")
        started.append(served)

        def up() -> bool:
            try:
                return httpx.get(served.url + "/healthz").status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None

        _poll(up, "the server to start")
        assert proc.poll() is None, "".join(served.log)
        return served

    yield start
    for served in started:
        served.close()


def test_sigterm_ends_a_slow_stream_after_the_shutdown_timeout(serve, fake_openai: FakeOpenAI) -> None:
    fake_openai.push(Action("slow"))
    served = serve(shutdown=1)
    stream = Stream(served.url)
    stream.start()
    stream.started()

    served.proc.send_signal(signal.SIGTERM)
    assert served.exit_code() == 0
    body = stream.ended()
    assert "tick 0" in body and LAST_TICK not in body  # cut, not waited for
    # The client learns the stream was cut: a final error event, then [DONE].
    events = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "error" in json.loads(events[-2])
    assert any("shutting down: waiting up to 1s for 1 requests" in line for line in served.log), served.log


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_stops_at_once(serve, fake_openai: FakeOpenAI, second: signal.Signals) -> None:
    fake_openai.push(Action("slow"))
    served = serve(shutdown=600)
    stream = Stream(served.url)
    stream.start()
    stream.started()

    served.proc.send_signal(signal.SIGTERM)
    served.wait_for_log("shutting down: waiting up to 600s")
    served.proc.send_signal(second)
    assert served.exit_code() == 0
    assert LAST_TICK not in stream.ended()


def test_sigterm_when_idle_exits_cleanly(serve) -> None:
    served = serve(shutdown=30)
    served.proc.send_signal(signal.SIGTERM)
    assert served.exit_code() == 0
    log = "".join(served.log)
    assert "switchboard: shutting down" in log
    # uvicorn re-raises the signal once stopped: that must not read as a second signal.
    assert "Traceback" not in log and "second" not in log, log
