"""``response_format: {"type": "json_object"}`` reaches every upstream, through the real proxy and the openai SDK.

What the Vercel AI SDK's ``Output.object`` and LangChain's ``json_mode`` send. Each upstream gets its own
form of JSON mode: Gemini ``responseMimeType``, the Responses API ``text.format``, an OpenAI-compatible
server the field as sent; Anthropic and Bedrock, whose structured outputs need a closed schema, a last
system block asking for one JSON object. Every test checks what the fake upstream received and that its
answer came back, streamed and not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from providers.wire.anthropic_messages import JSON_OBJECT_INSTRUCTION
from tests.conftest import local_provider, models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.responses_upstream import FakeResponses

JSON_MODE: Any = {"type": "json_object"}
MESSAGES: list[Any] = [
    {"role": "system", "content": "Reply in JSON."},
    {"role": "user", "content": "name a colour"},
]
ECHO = "Echo: name a colour"
GEMINI_KEY = "gm-test-key"
BEDROCK_CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def ask(proxy: Any, model: str, stream: bool) -> str:
    """The answer's text, as the openai SDK gives it (a stream joined from its deltas)."""
    client: Any = proxy.client()
    if not stream:
        out = client.chat.completions.create(model=model, messages=MESSAGES, response_format=JSON_MODE)
        assert out.choices[0].finish_reason == "stop"
        return out.choices[0].message.content or ""
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            response_format=JSON_MODE,
            stream=True,
        )
    )
    assert chunks[-1].choices[0].finish_reason == "stop"
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.fixture
def gemini(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGemini]:
    fake = FakeGemini(api_key=GEMINI_KEY).start()
    models_json(isolated_env, {"google": {"baseUrl": fake.url + "/v1beta"}})
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    yield fake
    fake.stop()


@pytest.fixture
def responses(isolated_env: Path) -> Iterator[FakeResponses]:
    fake = FakeResponses().start()
    provider = {
        "baseUrl": fake.url + "/v1",
        "api": "openai-responses",
        "apiKey": "sk-test",
        "models": [{"id": "gpt-5"}],
    }
    models_json(isolated_env, {"resp": provider})
    yield fake
    fake.stop()


def claude_provider(sb_home: Path, fake: FakeAnthropic) -> None:
    models = [{"id": "claude-sonnet-4-5", "reasoning": True, "maxTokens": 64000}]
    provider = {"baseUrl": fake.url, "api": "anthropic-messages", "apiKey": "sk-ant-test", "models": models}
    models_json(sb_home, {"claude": provider})


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_gets_a_last_system_block(
    isolated_env: Path, fake_claude: FakeAnthropic, start_proxy: Any, stream: bool
) -> None:
    claude_provider(isolated_env, fake_claude)
    assert ask(start_proxy(), "claude/claude-sonnet-4-5", stream) == ECHO
    sent = fake_claude.last.body
    # The client's system prompt first, the instruction last; no schema-based structured output.
    assert [b["text"] for b in sent["system"]] == ["Reply in JSON.", JSON_OBJECT_INSTRUCTION]
    assert "format" not in sent.get("output_config", {}) and "tools" not in sent


def test_anthropic_without_a_system_prompt(isolated_env: Path, fake_claude: FakeAnthropic, start_proxy: Any) -> None:
    claude_provider(isolated_env, fake_claude)
    out = (
        start_proxy()
        .client()
        .chat.completions.create(
            model="claude/claude-sonnet-4-5",
            messages=[{"role": "user", "content": "a JSON colour"}],
            response_format=JSON_MODE,
        )
    )
    assert out.choices[0].message.content == "Echo: a JSON colour"
    assert [b["text"] for b in fake_claude.last.body["system"]] == [JSON_OBJECT_INSTRUCTION]


def test_anthropic_json_schema_still_uses_output_config(
    isolated_env: Path, fake_claude: FakeAnthropic, start_proxy: Any
) -> None:
    claude_provider(isolated_env, fake_claude)
    schema = {
        "type": "object",
        "properties": {"c": {"type": "string"}},
        "required": ["c"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "colour", "schema": schema}}
    client = start_proxy().client()
    out = client.chat.completions.create(model="claude/claude-sonnet-4-5", messages=MESSAGES, response_format=fmt)
    assert out.choices[0].message.content == ECHO
    sent = fake_claude.last.body
    assert sent["output_config"]["format"] == {"type": "json_schema", "schema": schema}
    assert [b["text"] for b in sent["system"]] == ["Reply in JSON."]


@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_gets_a_last_system_block(fake_bedrock: FakeBedrock, start_proxy: Any, stream: bool) -> None:
    assert ask(start_proxy(), f"amazon-bedrock/{BEDROCK_CLAUDE}", stream) == ECHO
    sent = fake_bedrock.last.body
    assert fake_bedrock.last.auth == "sigv4"
    texts = [b["text"] for b in sent["system"] if "text" in b]
    assert texts == ["Reply in JSON.", JSON_OBJECT_INSTRUCTION]
    assert "outputConfig" not in sent and "toolConfig" not in sent


def test_bedrock_refuses_json_schema_with_a_fix(fake_bedrock: FakeBedrock, start_proxy: Any) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as info:
        start_proxy().client().chat.completions.create(
            model=f"amazon-bedrock/{BEDROCK_CLAUDE}",
            messages=MESSAGES,
            response_format=fmt,
        )
    assert "json_object" in info.value.message and info.value.body["param"] == "response_format"  # type: ignore[index]
    assert fake_bedrock.requests == []


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_gets_its_json_mime_type(gemini: FakeGemini, start_proxy: Any, stream: bool) -> None:
    assert ask(start_proxy(), "google/gemini-2.5-flash", stream) == ECHO
    config = gemini.last.body["generationConfig"]
    assert config["responseMimeType"] == "application/json" and "responseSchema" not in config
    assert gemini.last.body["systemInstruction"] == {"parts": [{"text": "Reply in JSON."}]}


@pytest.mark.parametrize("stream", [False, True])
def test_responses_api_gets_text_format(responses: FakeResponses, start_proxy: Any, stream: bool) -> None:
    assert ask(start_proxy(), "resp/gpt-5", stream) == ECHO
    assert responses.last.path == "/v1/responses"
    assert responses.last.body["text"]["format"] == {"type": "json_object"}


@pytest.mark.parametrize("stream", [False, True])
def test_openai_compatible_gets_it_as_sent(
    isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Any, stream: bool
) -> None:
    local_provider(isolated_env, fake_openai)
    # This fake streams each word with a space after it.
    assert ask(start_proxy(), "local/m", stream).rstrip() == ECHO
    assert fake_openai.last.path == "/v1/chat/completions"
    assert fake_openai.last.body["response_format"] == {"type": "json_object"}
    assert fake_openai.last.body["messages"] == MESSAGES
