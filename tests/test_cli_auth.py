"""``switchboard login`` / ``logout`` / ``doctor``, run as real processes.

Interactive prompts run in a pseudo-terminal (``pty.fork``: the child has a controlling terminal, so
``getpass`` turns echo off exactly as on a user's terminal); scripted input goes through a pipe. Every
run gets only PATH, HOME and SWITCHBOARD_HOME (under tmp) plus what a test sets.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from providers.extensions import active
from providers.oauth import FLOWS
from tests.conftest import auth_json, models_json, write_json

_SCRIPT = shutil.which("switchboard", path=str(Path(sys.executable).parent))
SWITCHBOARD = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "proxy"]
OPENAI_KEY = "sk-login-secret-9f8e7d6c5b4a"
GROQ_KEY = "gsk-groq-secret-1a2b3c4d5e6f"
PROVIDERS = active().providers  # built-ins and the installed extensions (examples/switchboard-acme)
_TIMEOUT = 20.0


@pytest.fixture
def env(tmp_path: Path, isolated_env: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "SWITCHBOARD_HOME": str(isolated_env),
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TERM": "dumb",
    }


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SWITCHBOARD, *args], env=env, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT)


class Term:
    """A process on a pseudo-terminal: ``expect`` what it prints, ``send`` what a user types."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: never return into pytest
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""
        self._seen = 0
        self.returncode: int | None = None

    def _read(self, deadline: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        self.output += chunk.decode("utf-8", "replace")
        return True

    def expect(self, text: str) -> str:
        deadline = time.monotonic() + _TIMEOUT
        while text not in self.output[self._seen :]:
            if time.monotonic() > deadline or not self._read(deadline):
                raise AssertionError(f"{text!r} never appeared; terminal so far:\n{self.output}")
        end = self.output.index(text, self._seen) + len(text)
        seen, self._seen = self.output[self._seen : end], end
        return seen

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def reading(self) -> None:
        """Wait until the process sleeps in a read of its terminal (Linux: its kernel wait channel).

        A ^C typed while Python is still writing the prompt sets the interrupt flag before the read starts
        and is only noticed after the next line: a user never types that fast, a test does.
        """
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline:
            with open(f"/proc/{self.pid}/wchan") as f:
                if f.read() in ("wait_woken", "n_tty_read"):
                    return
            time.sleep(0.01)
        raise AssertionError(f"the process never waited for input; terminal:\n{self.output}")

    def wait(self) -> int:
        deadline = time.monotonic() + _TIMEOUT
        while time.monotonic() < deadline and self._read(deadline):
            pass
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        while pid == 0 and time.monotonic() < deadline + 5:
            time.sleep(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:  # hung: end this one child and fail
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            os.close(self.fd)
            raise AssertionError(f"the process did not exit; terminal:\n{self.output}")
        os.close(self.fd)
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def term(env: dict[str, str], *args: str) -> Term:
    return Term([*SWITCHBOARD, *args], env)


def stored(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "auth.json").read_text())
    return data


# --- login with an API key -------------------------------------------------------------------------


def test_login_prompts_for_the_key_without_echo(env: dict[str, str], isolated_env: Path) -> None:
    t = term(env, "login", "openai")
    t.expect("API key for OpenAI (input hidden): ")
    t.send(OPENAI_KEY)
    assert t.wait() == 0, t.output
    assert OPENAI_KEY not in t.output  # neither echoed nor printed back
    assert "sk-…4a" not in t.output and "sk-…5b4a" in t.output  # a masked hint only
    assert stored(isolated_env) == {"openai": {"type": "api_key", "key": OPENAI_KEY}}
    assert (isolated_env / "auth.json").stat().st_mode & 0o777 == 0o600


def test_login_from_stdin_for_scripts(env: dict[str, str], isolated_env: Path) -> None:
    auth_json(isolated_env, {"custom": {"type": "api_key", "key": "kept"}})
    out = run(env, "login", "groq", "--stdin", stdin=GROQ_KEY + "\n")
    assert out.returncode == 0, out.stderr
    assert GROQ_KEY not in out.stdout + out.stderr
    assert stored(isolated_env) == {
        "custom": {"type": "api_key", "key": "kept"},
        "groq": {"type": "api_key", "key": GROQ_KEY},
    }
    assert (isolated_env / "auth.json").stat().st_mode & 0o777 == 0o600


def test_login_from_empty_stdin_stores_nothing(env: dict[str, str], isolated_env: Path) -> None:
    out = run(env, "login", "groq", "--stdin", stdin="\n")
    assert out.returncode == 1 and "nothing stored" in out.stderr
    assert not (isolated_env / "auth.json").exists() or stored(isolated_env) == {}


def test_login_without_a_terminal_points_at_stdin(env: dict[str, str], isolated_env: Path) -> None:
    out = run(env, "login", "groq")
    assert out.returncode == 2 and "--stdin" in out.stderr


def test_login_unknown_provider_suggests_close_matches(env: dict[str, str]) -> None:
    out = run(env, "login", "opnai")
    assert out.returncode == 2
    assert "unknown provider 'opnai'" in out.stderr and "'openai'" in out.stderr
    assert "Traceback" not in out.stderr


def test_login_cloudflare_notes_the_missing_account_id(env: dict[str, str], isolated_env: Path) -> None:
    out = run(env, "login", "cloudflare-workers-ai", "--stdin", stdin="cf-secret-token-0123456789")
    assert out.returncode == 0
    assert "CLOUDFLARE_ACCOUNT_ID" in out.stdout and "cf-secret-token-0123456789" not in out.stdout


# --- the selectable list ---------------------------------------------------------------------------


def _menu_numbers(text: str) -> dict[str, list[int]]:
    numbers: dict[str, list[int]] = {}
    for n, key in re.findall(r"^\s*(\d+)\. .*?\[([^\]]+)\]", text, re.M):
        numbers.setdefault(key, []).append(int(n))
    return numbers


def test_login_list_shows_subscriptions_first_and_selects_by_number(env: dict[str, str], isolated_env: Path) -> None:
    t = term(env, "login")
    menu = t.expect("Number or id (Enter to cancel): ")
    assert menu.index("Subscriptions:") < menu.index("API keys:")
    numbers = _menu_numbers(menu)
    subs = list(FLOWS)
    assert [k for k, _ in sorted(numbers.items(), key=lambda kv: kv[1][0])][: len(subs)] == subs
    for p in PROVIDERS:
        if p.env_vars and p.id not in ("github-copilot",):
            assert p.id in numbers, f"{p.id} missing from the list"
    assert numbers["anthropic"] == [subs.index("anthropic") + 1, numbers["anthropic"][1]]  # subscription and key
    t.send(str(numbers["groq"][0]))
    t.expect("API key for Groq (input hidden): ")
    t.send(GROQ_KEY)
    assert t.wait() == 0, t.output
    assert GROQ_KEY not in t.output
    assert stored(isolated_env) == {"groq": {"type": "api_key", "key": GROQ_KEY}}


def test_login_list_selects_by_id_and_reprompts_on_a_typo(env: dict[str, str], isolated_env: Path) -> None:
    t = term(env, "login")
    t.expect("Number or id (Enter to cancel): ")
    t.send("deepsek")
    assert "'deepseek'" in t.expect("Number or id (Enter to cancel): ")
    t.send("999")
    t.expect("Number or id (Enter to cancel): ")
    t.send("deepseek")
    t.expect("API key for DeepSeek (input hidden): ")
    t.send("sk-deepseek-secret-abcdef123456")
    assert t.wait() == 0, t.output
    assert stored(isolated_env)["deepseek"]["key"] == "sk-deepseek-secret-abcdef123456"


def test_login_list_enter_cancels(env: dict[str, str], isolated_env: Path) -> None:
    t = term(env, "login")
    t.expect("Number or id (Enter to cancel): ")
    t.send("")
    assert t.wait() == 1
    assert "Cancelled" in t.output
    assert not (isolated_env / "auth.json").exists()


def test_anthropic_offers_subscription_or_key(env: dict[str, str], isolated_env: Path) -> None:
    t = term(env, "login", "anthropic")
    menu = t.expect("Number or id (Enter to cancel): ")
    assert "subscription" in menu.lower() or "Claude" in menu
    t.send("2")
    t.expect("API key for Anthropic (input hidden): ")
    t.send("sk-ant-api-secret-0123456789")
    assert t.wait() == 0, t.output
    assert stored(isolated_env) == {"anthropic": {"type": "api_key", "key": "sk-ant-api-secret-0123456789"}}


# --- login with a subscription ---------------------------------------------------------------------

_FAKE_FLOW = """
class _Flow:
    provider_id = "openai-codex"
    label = "Fake Codex"

    def login(self, ui):
        ui.say("Fake login starting")
        ui.open_url("https://auth.example.test/authorize?state=xyz")
        code = ui.ask("Paste the code: ")
        secret = ui.ask("One-time password: ", secret=True)
        if code != "the-code" or secret != "otp-secret-55":
            raise RuntimeError(f"bad code {code!r}")
        return {"access": "acc-token-secret", "refresh": "ref-token", "expires": 4102444800000, "accountId": "a1"}

    def refresh(self, entry):
        return entry


FLOW = _Flow()
"""


def _runner(tmp_path: Path, env: dict[str, str], module: str) -> tuple[list[str], dict[str, str]]:
    """A `switchboard` whose openai-codex flow is ``module`` (from ``tmp_path``)."""
    (tmp_path / "fake_codex_flow.py").write_text(textwrap.dedent(_FAKE_FLOW))
    code = (
        "import sys, providers.oauth as o; "
        f"o.FLOWS['openai-codex'] = {module!r}; "
        "from proxy.cli import main; sys.argv[0] = 'switchboard'; sys.exit(main())"
    )
    return [sys.executable, "-c", code], {**env, "PYTHONPATH": f"{tmp_path}{os.pathsep}{Path.cwd()}"}


def test_subscription_login_runs_the_flow_and_stores_the_entry(
    tmp_path: Path, env: dict[str, str], isolated_env: Path
) -> None:
    argv, run_env = _runner(tmp_path, env, "fake_codex_flow")
    t = Term([*argv, "login", "openai-codex"], run_env)
    t.expect("Fake login starting")
    t.expect("https://auth.example.test/authorize?state=xyz")
    t.expect("Paste the code: ")
    t.send("the-code")
    t.expect("One-time password: ")
    t.send("otp-secret-55")
    assert t.wait() == 0, t.output
    assert "the-code" in t.output and "otp-secret-55" not in t.output  # visible vs hidden answers
    assert "acc-token-secret" not in t.output
    assert "Logged in to Fake Codex" in t.output and "2100-01-01T00:00:00Z" in t.output
    assert stored(isolated_env) == {
        "openai-codex": {
            "access": "acc-token-secret",
            "refresh": "ref-token",
            "expires": 4102444800000,
            "accountId": "a1",
            "type": "oauth",
        }
    }
    assert (isolated_env / "auth.json").stat().st_mode & 0o777 == 0o600


def test_subscription_login_failure_stores_nothing(tmp_path: Path, env: dict[str, str], isolated_env: Path) -> None:
    argv, run_env = _runner(tmp_path, env, "fake_codex_flow")
    t = Term([*argv, "login", "openai-codex"], run_env)
    t.expect("Paste the code: ")
    t.send("wrong")
    t.expect("One-time password: ")
    t.send("x")
    assert t.wait() == 1
    assert "login failed: bad code 'wrong'" in t.output
    assert not (isolated_env / "auth.json").exists() or stored(isolated_env) == {}


def test_subscription_without_its_flow_module(tmp_path: Path, env: dict[str, str], isolated_env: Path) -> None:
    argv, run_env = _runner(tmp_path, env, "no_such_flow_module_here")
    out = subprocess.run(
        [*argv, "login", "openai-codex"], env=run_env, capture_output=True, text=True, timeout=_TIMEOUT
    )
    assert out.returncode == 2
    assert "not available in this build" in out.stderr and "Traceback" not in out.stderr
    listed = subprocess.run([*argv, "login"], env=run_env, input="\n", capture_output=True, text=True, timeout=_TIMEOUT)
    assert re.search(r"\[openai-codex\]\s+\(not available in this build\)", listed.stdout)


# --- logout ----------------------------------------------------------------------------------------


def _two_entries(home: Path) -> None:
    auth_json(
        home,
        {"openai": {"type": "api_key", "key": OPENAI_KEY}, "groq": {"type": "api_key", "key": GROQ_KEY}},
    )


def test_logout_one_provider(env: dict[str, str], isolated_env: Path) -> None:
    _two_entries(isolated_env)
    out = run(env, "logout", "openai")
    assert out.returncode == 0 and "Removed" in out.stdout
    assert stored(isolated_env) == {"groq": {"type": "api_key", "key": GROQ_KEY}}
    assert (isolated_env / "auth.json").stat().st_mode & 0o777 == 0o600
    again = run(env, "logout", "opena")
    assert again.returncode == 1 and "nothing stored for 'opena'" in again.stderr


def test_logout_all_asks_first(env: dict[str, str], isolated_env: Path) -> None:
    _two_entries(isolated_env)
    no = run(env, "logout", stdin="n\n")
    assert no.returncode == 1 and "[y/N]" in no.stdout and "Nothing removed" in no.stdout
    assert set(stored(isolated_env)) == {"openai", "groq"}
    default = run(env, "logout", stdin="\n")
    assert default.returncode == 1 and set(stored(isolated_env)) == {"openai", "groq"}
    yes = run(env, "logout", stdin="y\n")
    assert yes.returncode == 0 and "Removed 2 stored credentials" in yes.stdout
    assert stored(isolated_env) == {}
    assert OPENAI_KEY not in no.stdout + yes.stdout


def test_logout_all_in_a_terminal(env: dict[str, str], isolated_env: Path) -> None:
    _two_entries(isolated_env)
    t = term(env, "logout")
    t.expect("[y/N] ")
    t.send("y")
    assert t.wait() == 0
    assert stored(isolated_env) == {}


def test_logout_all_with_yes(env: dict[str, str], isolated_env: Path) -> None:
    _two_entries(isolated_env)
    out = run(env, "logout", "--yes")
    assert out.returncode == 0 and "[y/N]" not in out.stdout
    assert stored(isolated_env) == {}
    assert run(env, "logout", "--yes").stdout.startswith("No stored credentials")


def test_logout_notes_an_env_var_still_set(env: dict[str, str], isolated_env: Path) -> None:
    _two_entries(isolated_env)
    out = run({**env, "GROQ_API_KEY": GROQ_KEY}, "logout", "groq")
    assert out.returncode == 0 and "GROQ_API_KEY" in out.stdout and GROQ_KEY not in out.stdout


# --- doctor ----------------------------------------------------------------------------------------

SECRETS = {
    "openai": OPENAI_KEY,
    "groq": GROQ_KEY,
    "oauth": "acc-oauth-secret-7777777777",
    "refresh": "ref-oauth-secret-8888888888",
    "custom": "custom-models-json-secret-42",
    "bedrock": "aws-secret-access-key-value-99",
    "cloudflare": "cf-stored-token-secret-31337",
}


@pytest.fixture
def doctor_env(env: dict[str, str], isolated_env: Path) -> dict[str, str]:
    auth_json(
        isolated_env,
        {
            "openai": {"type": "api_key", "key": SECRETS["openai"]},
            "anthropic": {
                "type": "oauth",
                "access": SECRETS["oauth"],
                "refresh": SECRETS["refresh"],
                "expires": 4102444800000,
            },
            "openrouter": {"type": "api_key", "key": "!cat /nonexistent/key"},
            "mistral": {"type": "api_key", "key": "$UNSET_MISTRAL_VAR"},
            "cloudflare-workers-ai": {"type": "api_key", "key": SECRETS["cloudflare"]},
            "github-copilot": {"type": "oauth", "access": "old", "refresh": "", "expires": 1000},
        },
    )
    models_json(
        isolated_env,
        {
            "mylocal": {
                "baseUrl": "http://127.0.0.1:9/v1",
                "api": "openai-completions",
                "apiKey": SECRETS["custom"],
                "models": [{"id": "m1"}],
            },
            "needskey": {
                "baseUrl": "http://127.0.0.1:9/v1",
                "api": "openai-completions",
                "apiKey": "$UNSET_NEEDSKEY",
                "models": [{"id": "m2"}],
            },
        },
    )
    return {
        **env,
        "GROQ_API_KEY": SECRETS["groq"],
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE0000KEY1",
        "AWS_SECRET_ACCESS_KEY": SECRETS["bedrock"],
    }


def _assert_no_secret(text: str) -> None:
    for name, secret in SECRETS.items():
        assert secret not in text, f"the {name} secret leaked"
    assert "AKIAEXAMPLE0000KEY1" not in text


def test_doctor_json_reports_every_source(doctor_env: dict[str, str], isolated_env: Path) -> None:
    out = run(doctor_env, "doctor", "--json")
    assert out.returncode == 0, out.stderr
    _assert_no_secret(out.stdout + out.stderr)
    rows = {r["provider"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {p.id for p in PROVIDERS} | {"mylocal", "needskey"}
    for r in rows.values():
        assert set(r) == {"provider", "name", "usable", "source", "expires", "fix", "problems", "extension"}
        assert (r["fix"] is None) == r["usable"]
    assert rows["openai"]["usable"] and rows["openai"]["source"] == f"auth.json API key (key sk-…{OPENAI_KEY[-4:]})"
    assert rows["anthropic"] == {
        "provider": "anthropic",
        "name": "Anthropic",
        "usable": True,
        "source": "auth.json OAuth login",
        "expires": "2100-01-01T00:00:00Z",
        "fix": None,
        "problems": [],
        "extension": None,
    }
    assert rows["openrouter"]["usable"] and rows["openrouter"]["source"] == "auth.json API key (a !command)"
    assert rows["groq"]["usable"] and rows["groq"]["source"] == "env GROQ_API_KEY"
    assert rows["mylocal"]["usable"] and rows["mylocal"]["source"].startswith("models.json apiKey (key ")
    assert rows["amazon-bedrock"]["usable"] and rows["amazon-bedrock"]["source"].startswith("AWS access key AKIA…")
    # Unusable ones, each with its concrete fix.
    assert not rows["deepseek"]["usable"] and rows["deepseek"]["source"] is None
    assert rows["deepseek"]["fix"] == "set DEEPSEEK_API_KEY or run 'switchboard login deepseek'"
    assert "UNSET_MISTRAL_VAR" in rows["mistral"]["fix"] and "switchboard login mistral" in rows["mistral"]["fix"]
    assert "CLOUDFLARE_ACCOUNT_ID" in rows["cloudflare-workers-ai"]["fix"]
    assert "providers.needskey.apiKey" in rows["needskey"]["fix"] and "UNSET_NEEDSKEY" in rows["needskey"]["fix"]
    assert "switchboard login github-copilot" in rows["github-copilot"]["fix"]
    assert "gcloud auth application-default login" in rows["google-vertex"]["fix"]
    assert "AZURE_OPENAI_API_KEY" in rows["azure-openai-responses"]["fix"]


def test_doctor_text(doctor_env: dict[str, str]) -> None:
    out = run(doctor_env, "doctor")
    assert out.returncode == 0, out.stderr
    _assert_no_secret(out.stdout + out.stderr)
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:] if line.strip()}
    assert lines["openai"].split()[1] == "ok" and f"sk-…{OPENAI_KEY[-4:]}" in lines["openai"]
    assert "auth.json OAuth login, expires 2100-01-01T00:00:00Z" in lines["anthropic"]
    assert "env GROQ_API_KEY" in lines["groq"]
    assert "models.json apiKey" in lines["mylocal"]
    assert "AWS access key" in lines["amazon-bedrock"]
    assert lines["deepseek"].split()[1] == "missing"
    assert "fix: set DEEPSEEK_API_KEY or run 'switchboard login deepseek'" in lines["deepseek"]
    assert re.search(r"\d+ of \d+ providers usable", out.stdout)


def test_doctor_with_aws_profile_and_nothing_else(env: dict[str, str], isolated_env: Path) -> None:
    out = run({**env, "AWS_PROFILE": "dev"}, "doctor", "--json")
    rows = {r["provider"]: r for r in json.loads(out.stdout)}
    assert rows["amazon-bedrock"]["usable"] and rows["amazon-bedrock"]["source"] == "AWS profile 'dev'"
    assert sum(r["usable"] for r in rows.values()) == 1


def test_doctor_survives_a_broken_models_json(env: dict[str, str], isolated_env: Path) -> None:
    write_json(isolated_env / "models.json", {"providers": {"groq": {"baseURL": "x"}}})
    out = run(env, "doctor", "--json")
    assert out.returncode == 0 and "models.json" in out.stderr
    assert {r["provider"] for r in json.loads(out.stdout)} == {p.id for p in PROVIDERS}


def test_choose_in_process_ambiguous_id_and_eof() -> None:
    from proxy.cli_auth import MenuItem, choose

    items = [
        MenuItem("anthropic", "Claude Pro/Max", "subscription"),
        MenuItem("openai", "OpenAI", "api_key"),
        MenuItem("anthropic", "Anthropic", "api_key"),
    ]
    written: list[str] = []
    answers = iter(["anthropic", "3"])
    picked = choose(items, title="Pick", read=lambda prompt: next(answers), write=written.append)
    assert picked == items[2]
    assert any("1 for Claude Pro/Max (subscription), 3 for Anthropic (API key)" in w for w in written)

    def eof(prompt: str) -> str:
        raise EOFError

    assert choose(items, title="Pick", read=eof, write=written.append) is None


def test_ctrl_c_at_the_menu_ends_without_a_traceback(env: dict[str, str], isolated_env: Path) -> None:
    t = term(env, "login")
    t.expect("Number or id (Enter to cancel): ")
    t.reading()
    os.write(t.fd, b"\x03")  # the terminal turns ^C into SIGINT
    assert t.wait() == 130
    assert "Traceback" not in t.output and "Cancelled" in t.output
