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


@contextmanager
def serving(tmp_path: Path, env: dict[str, str]) -> Iterator[Served]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            assert proc.poll() is None, served.output
            try:
                if httpx.get(served.url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, served.output
            time.sleep(0.02)
        yield served
    finally:
        proc.terminate()
        proc.wait(DEADLINE)
