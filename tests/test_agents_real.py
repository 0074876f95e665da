"""The real agent programs against a live ``switchboard serve``: Codex CLI (``codex exec``, which speaks only
``POST /v1/responses``) and Claude Code (``claude -p``, which speaks ``/v1/messages?beta=true`` with betas,
thinking and ~a dozen tools), each to an upstream of its own API and to one Switchboard must translate to.

Everything runs inside one loopback-only network namespace (tests/agents_netns.py), since both programs try
to reach their vendors' hosts. Each conversation is one turn in which the fake model calls the program's shell
tool (``echo switchboard-tool-ok``, see tests/agents_fakes.py) and a second in which it summarises the
tool's output: so the program ran the command, sent the output back through Switchboard in its own wire
format, and printed the final answer. The programs come from scripts/agents (pinned versions in .agents/);
without npm, root or ``unshare`` the tests skip with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.agents_netns import ANTHROPIC_KEY, Report, Spec, run_in_netns, unavailable
from tests.fakes.anthropic_upstream import sign

_WHY_NOT = unavailable()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")

TOOL_OUTPUT = "switchboard-tool-ok"
#: Per program run; a healthy run takes under a second. Below pytest-timeout (180 s), so a hung program
#: fails with its output and the requests seen so far.
TIMEOUT = 120.0
SONNET = "claude-sonnet-4-5-20250929"

_CODEX_CONFIG = """\
model_provider = "switchboard"

[model_providers.switchboard]
name = "Switchboard"
base_url = "{proxy}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
# One attempt: a failure must show in the test, not be hidden by Codex's retries.
request_max_retries = 0
stream_max_retries = 0

# Off: the plugin sync (GitHub) and metrics export (ab.chatgpt.com) cannot connect in the namespace, and
# Codex waits ~5 s for them before it exits.
[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
"""


def codex(model: str, fakes: list[str], *extra: str) -> Spec:
    prompt = f'Run it: TOOL exec_command {{"cmd": "echo {TOOL_OUTPUT}"}}'
    argv = ["codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox"]
    argv += ["--ephemeral", "--color", "never", *extra, "-m", model, prompt]
    env = {"CODEX_HOME": "{tmp}/codex", "OPENAI_API_KEY": "sk-switchboard-unused"}
    files = {"codex/config.toml": _CODEX_CONFIG}
    return {"fakes": fakes, "aliases": {}, "argv": argv, "env": env, "files": files, "timeout": TIMEOUT}


def claude(model: str, fakes: list[str], aliases: dict[str, str]) -> Spec:
    prompt = f'Run it: TOOL Bash {{"command": "echo {TOOL_OUTPUT}"}}'
    argv = ["claude", "-p", prompt, "--output-format", "json", "--model", model, "--allowedTools", "Bash"]
    env = {
        "ANTHROPIC_BASE_URL": "{proxy}",
        "ANTHROPIC_API_KEY": "sk-switchboard-unused",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    return {"fakes": fakes, "aliases": aliases, "argv": argv, "env": env, "files": {}, "timeout": TIMEOUT}


def ran(report: Report) -> str:
    """The program's stdout, after checking it exited 0 and Switchboard forwarded no upstream refusal."""
    where = f"stdout:\n{report['stdout'][-3000:]}\nstderr:\n{report['stderr'][-3000:]}\nserve:\n{report['serve_log']}"
    assert report["returncode"] == 0, where
    assert "answered 4" not in report["serve_log"] and "answered 5" not in report["serve_log"], where
    return report["stdout"]


def bodies(report: Report, fake: str) -> list[dict[str, Any]]:
    return [r["body"] for r in report["requests"][fake]]


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(part.get("text") or part.get("content") or "") for part in content or [])


# --- Codex CLI: POST /v1/responses -----------------------------------------------------------------------


def test_codex_exec_to_openai_chat_runs_a_shell_command() -> None:
    """Responses → OpenAI chat completions (translated): the call and its output cross both wires."""
    report = run_in_netns(codex("local/m", ["openai"]))
    out = ran(report)
    assert "Tool results:" in out and TOOL_OUTPUT in out, out
    first, second = bodies(report, "openai")
    assert [r["path"] for r in report["requests"]["openai"]] == ["/v1/chat/completions"] * 2
    assert first["model"] == "m" and first["stream"] is True
    assert "exec_command" in [t["function"]["name"] for t in first["tools"]]
    assert first["messages"][0]["role"] == "system" and "Codex" in first["messages"][0]["content"]
    assert "TOOL exec_command" in text_of(first["messages"][-1]["content"])
    # The second turn: Codex's function_call and function_call_output items, as chat messages.
    call, output = second["messages"][-2:]
    assert call["role"] == "assistant"
    assert call["tool_calls"][0]["function"]["name"] == "exec_command"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"cmd": f"echo {TOOL_OUTPUT}"}
    assert output["role"] == "tool" and output["tool_call_id"] == call["tool_calls"][0]["id"]
    assert TOOL_OUTPUT in output["content"]


def test_codex_exec_to_anthropic_replays_thinking_and_runs_a_shell_command() -> None:
    """Responses → Anthropic Messages (translated), with reasoning on: the signed thinking block comes back
    to Codex as an encrypted reasoning item and goes upstream again, intact, with the tool result."""
    report = run_in_netns(codex("anthropic/claude-sonnet-4-5", ["anthropic"], "-c", 'model_reasoning_effort="high"'))
    out = ran(report)
    assert "Tool results:" in out and TOOL_OUTPUT in out, out
    first, second = bodies(report, "anthropic")
    assert first["model"] == "claude-sonnet-4-5" and first["thinking"]["type"] == "enabled"
    assert "exec_command" in [t["name"] for t in first["tools"]]
    assert all(r["headers"]["x-api-key"] == ANTHROPIC_KEY for r in report["requests"]["anthropic"])
    assistant, results = second["messages"][-2:]
    thinking, use = assistant["content"]
    assert thinking["type"] == "thinking" and thinking["signature"] == sign(thinking["thinking"])
    assert use["type"] == "tool_use" and use["input"] == {"cmd": f"echo {TOOL_OUTPUT}"}
    result = results["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == use["id"]
    assert TOOL_OUTPUT in text_of(result["content"])


# --- Claude Code: POST /v1/messages ----------------------------------------------------------------------


def test_claude_code_to_anthropic_passes_betas_thinking_and_tool_use_through() -> None:
    """Messages → Anthropic (passthrough): Claude Code's betas, ``context_management`` and thinking reach
    the upstream as sent (the fake refuses ``context_management`` without its beta), and the signed
    thinking block is replayed with the tool result."""
    report = run_in_netns(claude(SONNET, ["anthropic"], {}))
    result = json.loads(ran(report))
    assert result["is_error"] is False and TOOL_OUTPUT in result["result"], result
    requests = report["requests"]["anthropic"]
    assert [r["path"] for r in requests] == ["/v1/messages"] * 2
    first, second = (r["body"] for r in requests)
    betas = requests[0]["headers"]["anthropic-beta"].split(",")
    assert "claude-code-20250219" in betas and "context-management-2025-06-27" in betas
    assert requests[0]["headers"]["anthropic-version"] == "2023-06-01"
    assert requests[0]["headers"]["x-api-key"] == ANTHROPIC_KEY  # Switchboard's key, not the client's
    assert first["model"] == SONNET and first["context_management"]["edits"]
    assert first["thinking"]["type"] == "enabled" and first["thinking"]["budget_tokens"] < first["max_tokens"]
    assert "Bash" in [t["name"] for t in first["tools"]]
    assistant, results = second["messages"][-2:]
    thinking, use = assistant["content"]
    assert thinking["type"] == "thinking" and thinking["signature"] == sign(thinking["thinking"])
    assert use["name"] == "Bash" and use["input"] == {"command": f"echo {TOOL_OUTPUT}"}
    tool_result = results["content"][0]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == use["id"]
    assert TOOL_OUTPUT in text_of(tool_result["content"])


def test_claude_code_aliased_to_openai_chat_runs_a_shell_command() -> None:
    """Messages → OpenAI chat (translated), the Claude model id sent elsewhere by ``aliases`` in config.json:
    Anthropic-only fields stay behind, system blocks become system messages, tool use crosses both ways."""
    report = run_in_netns(claude(SONNET, ["openai"], {SONNET: "local/m"}))
    result = json.loads(ran(report))
    assert result["is_error"] is False and TOOL_OUTPUT in result["result"], result
    requests = report["requests"]["openai"]
    assert [r["path"] for r in requests] == ["/v1/chat/completions"] * 2
    first, second = (r["body"] for r in requests)
    assert first["model"] == "m" and first["stream"] is True
    assert not {"thinking", "context_management", "metadata", "anthropic_beta"} & first.keys()
    assert all("anthropic-beta" not in r["headers"] for r in requests)
    system = [m["content"] for m in first["messages"] if m["role"] == "system"]
    assert any("Claude" in text_of(s) for s in system)
    assert "Bash" in [t["function"]["name"] for t in first["tools"]]
    call, output = second["messages"][-2:]
    assert call["role"] == "assistant" and call["tool_calls"][0]["function"]["name"] == "Bash"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"command": f"echo {TOOL_OUTPUT}"}
    assert output["role"] == "tool" and output["tool_call_id"] == call["tool_calls"][0]["id"]
    assert TOOL_OUTPUT in text_of(output["content"])
