"""``switchboard serve`` as a real subprocess on a free port, for tests that need the process's own start-up
(entry-point discovery, start-up log lines). :func:`serving` waits for ``/healthz`` and stops it after."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.fakes.server import free_port

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 30.0


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    @property
    def output(self) -> str:
        return self.log.read_text()


def child_env(extra: dict[str, str] | None = None, pythonpath: Path | None = None) -> dict[str, str]:
    """The test's environment (already isolated by conftest) plus ``extra``; ``pythonpath`` goes first on
    the child's ``sys.path`` (where a test puts extension packages)."""
    env = {**os.environ, **(extra or {})}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH")) if p)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=DEADLINE
    )


def start_served(
    tmp_path: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (), stdin: str | None = None
) -> Served:
    """``switchboard serve`` on a free port, its output in a log file, once ``/healthz`` answers (polled with a
    deadline). ``env`` None: the test's own; ``stdin``: written to the process and closed."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + DEADLINE
    while True:
        if proc.poll() is not None:
            raise AssertionError(served.output)
        try:
            if httpx.get(served.url + "/healthz").status_code == 200:
                return served
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            proc.wait(DEADLINE)
            raise AssertionError(served.output)
        time.sleep(0.02)


@contextmanager
def serving(tmp_path: Path, env: dict[str, str]) -> Iterator[Served]:
    served = start_served(tmp_path, env)
    try:
        yield served
    finally:
        served.proc.terminate()
        served.proc.wait(DEADLINE)
