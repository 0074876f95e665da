"""Run a real agent program (Codex CLI, Claude Code) against ``switchboard serve`` and fake upstreams, all inside
one network namespace that has only loopback, so the program cannot reach its vendor's hosts.

Two halves. :func:`run_in_netns` (called by the tests) starts ``unshare --net python -m tests.agents_netns``
with a :class:`Spec` as JSON on stdin and reads the :class:`Report` it prints. :func:`main` (run in the
namespace) brings ``lo`` up, starts the fakes the spec names, writes ``models.json`` and ``config.json`` for
them into a fresh ``SWITCHBOARD_HOME``, starts ``python -m proxy serve`` as its own process, runs the program
and reports its output with every request each fake received.

``{proxy}`` in the program's argv, env values and files is replaced by Switchboard's URL; ``{tmp}`` by the
run's scratch directory (the program's HOME and working directory live there).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, TypedDict

from tests.agents_fakes import FAKES, provider_entry
from tests.fakes.server import FakeServer, free_port

ROOT = Path(__file__).resolve().parent.parent
AGENTS_BIN = ROOT / ".agents" / "node_modules" / ".bin"
#: The key the fake Anthropic accepts; Switchboard's ``anthropic`` provider reads it from the environment.
ANTHROPIC_KEY = "sk-ant-test"
#: No proxy from the environment: everything here is on loopback.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
#: How long Switchboard may take to answer /healthz after it is started.
_SERVE_DEADLINE = 30.0


class Spec(TypedDict):
    fakes: list[str]  # names in tests.agents_fakes.FAKES
    aliases: dict[str, str]  # config.json "aliases"
    argv: list[str]  # argv[0] is a program in .agents/node_modules/.bin
    env: dict[str, str]  # added to a minimal environment (PATH, HOME={tmp}/home, LANG)
    files: dict[str, str]  # path relative to {tmp} -> content
    timeout: float


class Report(TypedDict):
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # the program's run alone, not the setup
    requests: dict[str, list[dict[str, Any]]]  # fake name -> [{method, path, headers, body}]
    serve_log: str


def unavailable() -> str | None:
    """Why the programs cannot be run here (for ``pytest.skip``), or None."""
    if shutil.which("npm") is None:
        return "npm is not installed (scripts/agents installs the agent programs with it)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is not installed; the programs need a loopback-only netns"
    if os.geteuid() != 0:
        return "not root: `unshare --net` needs root to make a loopback-only network namespace"
    missing = [name for name in ("codex", "claude") if not (AGENTS_BIN / name).exists()]
    if missing:
        return f"{', '.join(missing)} not installed in .agents/: run scripts/agents"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`unshare --net` fails here ({probe.stderr.strip()}); a container needs CAP_SYS_ADMIN"
    return None


def run_in_netns(spec: Spec) -> Report:
    """Run ``spec`` in a new loopback-only network namespace; the report of :func:`main`."""
    cmd = ["unshare", "--net", sys.executable, "-m", "tests.agents_netns"]
    done = subprocess.run(
        cmd, input=json.dumps(spec), capture_output=True, text=True, cwd=ROOT, timeout=spec["timeout"] + 30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the netns driver failed ({done.returncode}):\n{done.stderr[-4000:]}")
    report: Report = json.loads(done.stdout)
    return report


def main() -> None:
    spec: Spec = json.loads(sys.stdin.read())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    fakes: dict[str, FakeServer] = {name: FAKES[name]().start() for name in spec["fakes"]}
    try:
        with tempfile.TemporaryDirectory(prefix="agents-") as tmp_dir:
            report = _run(spec, fakes, Path(tmp_dir))
    finally:
        for fake in fakes.values():
            fake.stop()
    sys.stdout.write(json.dumps(report))


def _run(spec: Spec, fakes: dict[str, FakeServer], tmp: Path) -> Report:
    sb_home = tmp / "switchboard"
    sb_home.mkdir()
    (sb_home / "models.json").write_text(json.dumps({"providers": _providers(fakes)}))
    config = {"aliases": spec["aliases"], "discovery": {"enabled": False}}
    (sb_home / "config.json").write_text(json.dumps(config))
    port = free_port()
    proxy = f"http://127.0.0.1:{port}"
    serve_log = tmp / "serve.log"
    serve_env = {**_base_env(tmp), "SWITCHBOARD_HOME": str(sb_home), "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
    with serve_log.open("wb") as log:
        serve = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--port", str(port)],
            cwd=ROOT,
            env=serve_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(proxy, serve)
        result = _run_program(spec, tmp, proxy)
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(10)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    requests = {name: [_recorded(r) for r in fake.requests] for name, fake in fakes.items()}
    return {
        "returncode": result["returncode"],
        "stdout": result["stdout"],
        "stderr": result["stderr"],
        "seconds": result["seconds"],
        "requests": requests,
        "serve_log": serve_log.read_text(errors="replace")[-20000:],
    }


def _providers(fakes: dict[str, FakeServer]) -> dict[str, Any]:
    return {entry[0]: entry[1] for name, fake in fakes.items() if (entry := provider_entry(name, fake.url))}


def _base_env(tmp: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}


def _wait_healthy(url: str, serve: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _SERVE_DEADLINE
    while True:
        if serve.poll() is not None:
            raise RuntimeError(f"switchboard serve exited with {serve.returncode} before answering")
        try:
            with _DIRECT.open(url + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("switchboard serve did not answer /healthz")
        time.sleep(0.05)


def _run_program(spec: Spec, tmp: Path, proxy: str) -> dict[str, Any]:
    def fill(text: str) -> str:
        return text.replace("{proxy}", proxy).replace("{tmp}", str(tmp))

    for rel, content in spec["files"].items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fill(content))
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    env = {**_base_env(tmp), **{k: fill(v) for k, v in spec["env"].items()}}
    argv = [str(AGENTS_BIN / spec["argv"][0]), *(fill(a) for a in spec["argv"][1:])]
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, cwd=work, env=env, capture_output=True, text=True, timeout=spec["timeout"], stdin=subprocess.DEVNULL
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = -1, _text(exc.stdout), _text(exc.stderr) + f"\n[timed out after {spec['timeout']}s]"
    return {"returncode": code, "stdout": out, "stderr": err, "seconds": time.monotonic() - started}


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def _recorded(r: Any) -> dict[str, Any]:
    body = r.body if not isinstance(r.body, bytes) else r.body.decode(errors="replace")
    return {"method": r.method, "path": r.path, "headers": {k.lower(): v for k, v in r.headers.items()}, "body": body}


if __name__ == "__main__":
    main()
