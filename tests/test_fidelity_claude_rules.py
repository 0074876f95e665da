"""Claude's request rules are one set, whether Claude is reached over Anthropic's API or Bedrock Converse.

The same client request goes through the real proxy to the fake Anthropic and the fake Bedrock (which
checks SigV4 and the Converse body); each test compares Claude's native fields in what they received.
The deliberate differences (``providers/wire/claude_rules.py``'s docstring) are stated by
:func:`test_budget_thinking_differs_only_where_the_routes_differ`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import FakeBedrock

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
HI = [{"role": "user", "content": "hello"}]
INTERLEAVED = "interleaved-thinking-2025-05-14"


@pytest.fixture
def client(
    isolated_env: Path, fake_claude: FakeAnthropic, fake_bedrock: FakeBedrock, start_proxy: Any
) -> openai.OpenAI:
    ids = ("claude-opus-4-6", "claude-opus-4-7", "claude-sonnet-4-6", "claude-sonnet-4-5")
    models = [{"id": i, "reasoning": True, "maxTokens": 64000} for i in ids]
    row = {"baseUrl": fake_claude.url, "api": "anthropic-messages", "apiKey": "sk-ant-test", "models": models}
    models_json(isolated_env, {"claude": row})
    return start_proxy().client()  # type: ignore[no-any-return]


def both(
    client: openai.OpenAI,
    fake_claude: FakeAnthropic,
    fake_bedrock: FakeBedrock,
    anthropic_id: str,
    bedrock_id: str,
    **kw: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Anthropic's body, Bedrock's ``additionalModelRequestFields``) for the same request."""
    client.chat.completions.create(model=f"claude/{anthropic_id}", **kw)
    client.chat.completions.create(model=f"amazon-bedrock/{bedrock_id}", **kw)
    return fake_claude.last.body, fake_bedrock.last.body.get("additionalModelRequestFields", {})


@pytest.mark.parametrize(
    ("anthropic_id", "bedrock_id", "asked", "sent"),
    [
        ("claude-opus-4-6", "anthropic.claude-opus-4-6-v1", "max", "max"),
        ("claude-sonnet-4-6", "anthropic.claude-sonnet-4-6", "max", "high"),  # max is not for this model
        ("claude-opus-4-7", "anthropic.claude-opus-4-7", "xhigh", "xhigh"),
        ("claude-sonnet-4-6", "anthropic.claude-sonnet-4-6", "minimal", "low"),
    ],
)
def test_adaptive_effort_is_the_same_on_both_routes(
    client: openai.OpenAI,
    fake_claude: FakeAnthropic,
    fake_bedrock: FakeBedrock,
    anthropic_id: str,
    bedrock_id: str,
    asked: str,
    sent: str,
) -> None:
    anthropic_body, fields = both(
        client, fake_claude, fake_bedrock, anthropic_id, bedrock_id, messages=HI, reasoning_effort=asked
    )
    assert anthropic_body["output_config"] == fields["output_config"] == {"effort": sent}
    assert anthropic_body["thinking"] == fields["thinking"] == {"type": "adaptive", "display": "summarized"}


def test_budget_thinking_differs_only_where_the_routes_differ(
    client: openai.OpenAI, fake_claude: FakeAnthropic, fake_bedrock: FakeBedrock
) -> None:
    bedrock_id = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    anthropic_body, fields = both(
        client,
        fake_claude,
        fake_bedrock,
        "claude-sonnet-4-5",
        bedrock_id,
        messages=HI,
        tools=[WEATHER],
        reasoning_effort="high",
    )
    # The same budget; Bedrock also asks for the summarized display, which Anthropic's budget thinking omits.
    assert anthropic_body["thinking"] == {"type": "enabled", "budget_tokens": 16384}
    assert fields["thinking"] == {"type": "enabled", "budget_tokens": 16384, "display": "summarized"}
    # The same beta: a header on Anthropic, a body field on Bedrock.
    assert INTERLEAVED in fake_claude.last.headers["anthropic-beta"].split(",")
    assert fields["anthropic_beta"] == [INTERLEAVED]


def test_tool_ids_and_unsigned_tool_turns_are_handled_alike(
    client: openai.OpenAI, fake_claude: FakeAnthropic, fake_bedrock: FakeBedrock
) -> None:
    call = {"id": "fc.1:x", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    messages = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": [call]},  # from a provider that did not sign
        {"role": "tool", "tool_call_id": "fc.1:x", "content": "3C"},
    ]
    bedrock_id = "anthropic.claude-opus-4-6-v1"
    anthropic_body, fields = both(
        client,
        fake_claude,
        fake_bedrock,
        "claude-opus-4-6",
        bedrock_id,
        messages=messages,
        tools=[WEATHER],
        reasoning_effort="max",
    )
    assert "thinking" not in anthropic_body and fields == {}  # thinking would need signed reasoning here
    assert anthropic_body["messages"][1]["content"][0]["id"] == "fc_1_x"
    assert fake_bedrock.last.body["messages"][1]["content"][0]["toolUse"]["toolUseId"] == "fc_1_x"


def test_thinking_that_cannot_be_replayed_signed_is_dropped_on_anthropic_kept_as_text_on_bedrock(
    client: openai.OpenAI, fake_claude: FakeAnthropic, fake_bedrock: FakeBedrock
) -> None:
    unsigned = {"role": "assistant", "content": "Sunny.", "reasoning_content": "Check the sky first."}
    messages = [*HI, unsigned, {"role": "user", "content": "and tomorrow?"}]
    both(client, fake_claude, fake_bedrock, "claude-sonnet-4-5", "anthropic.claude-sonnet-4-6", messages=messages)
    assert fake_claude.last.body["messages"][1]["content"] == [{"type": "text", "text": "Sunny."}]
    assert fake_bedrock.last.body["messages"][1]["content"] == [{"text": "Check the sky first."}, {"text": "Sunny."}]
