"""Sampling fields a client sends on the OpenAI chat surface reach each provider as it understands them.

Through the real path: the ``openai`` SDK → the proxy → a fake upstream that validates the body the way the
provider does; each test reads the body the fake recorded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.responses_upstream import FakeResponses

SAMPLING: dict[str, Any] = {"seed": 42, "presence_penalty": 0.5, "frequency_penalty": -0.25}
TAGS = {"team": "search", "run": "7"}
HI = [{"role": "user", "content": "hello"}]


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    server = FakeGemini().start()
    yield server
    server.stop()


@pytest.fixture
def responses() -> Iterator[FakeResponses]:
    server = FakeResponses().start()
    yield server
    server.stop()


@pytest.fixture
def client(
    isolated_env: Path,
    gemini: FakeGemini,
    responses: FakeResponses,
    fake_claude: FakeAnthropic,
    fake_bedrock: FakeBedrock,
    start_proxy: Any,
) -> openai.OpenAI:
    models_json(
        isolated_env,
        {
            "gem": {
                "baseUrl": gemini.url + "/v1beta",
                "api": "google-generative-ai",
                "apiKey": "gm-test-key",
                "models": [{"id": "gemini-2.0-flash"}, {"id": "gemini-2.5-flash"}],
            },
            "resp": {
                "baseUrl": responses.url + "/v1",
                "api": "openai-responses",
                "apiKey": "sk-test",
                "models": [{"id": "gpt-4.1"}],
            },
            "claude": {
                "baseUrl": fake_claude.url,
                "api": "anthropic-messages",
                "apiKey": "sk-ant-test",
                "models": [{"id": "claude-sonnet-4-5", "maxTokens": 64000}],
            },
        },
    )
    assert os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == fake_bedrock.url
    return start_proxy().client()  # type: ignore[no-any-return]


def test_gemini_gets_seed_and_penalties(client: openai.OpenAI, gemini: FakeGemini) -> None:
    out = client.chat.completions.create(
        model="gem/gemini-2.0-flash", messages=HI, service_tier="flex", metadata=TAGS, **SAMPLING
    )
    assert out.choices[0].message.content == "Echo: hello"
    config = gemini.last.body["generationConfig"]
    assert (config["seed"], config["presencePenalty"], config["frequencyPenalty"]) == (42, 0.5, -0.25)
    # No Gemini equivalent: left out (the fake, like Gemini, refuses unknown fields).
    assert set(gemini.last.body) == {"contents", "generationConfig"}


def test_gemini_25_and_later_get_the_seed_but_no_penalties(client: openai.OpenAI, gemini: FakeGemini) -> None:
    """Gemini 2.5 answers 400 "Penalty is not enabled for models/gemini-2.5-flash"; a zero tunes nothing."""
    client.chat.completions.create(model="gem/gemini-2.5-flash", messages=HI, **SAMPLING)
    assert gemini.last.body["generationConfig"] == {"seed": 42}
    client.chat.completions.create(model="gem/gemini-2.0-flash", messages=HI, presence_penalty=0, frequency_penalty=0)
    assert "generationConfig" not in gemini.last.body


def test_responses_gets_service_tier_and_metadata(client: openai.OpenAI, responses: FakeResponses) -> None:
    out = client.chat.completions.create(
        model="resp/gpt-4.1", messages=HI, service_tier="flex", metadata=TAGS, **SAMPLING
    )
    assert out.choices[0].message.content == "Echo: hello"
    body = responses.last.body
    assert body["service_tier"] == "flex" and body["metadata"] == TAGS
    assert not set(SAMPLING) & set(body)  # the Responses API has no seed or penalties
    with pytest.raises(openai.BadRequestError) as info:  # one answer per request, as before
        client.chat.completions.create(model="resp/gpt-4.1", messages=HI, n=2)
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "n"


def test_anthropic_gets_the_user_id_from_metadata(client: openai.OpenAI, fake_claude: FakeAnthropic) -> None:
    client.chat.completions.create(
        model="claude/claude-sonnet-4-5", messages=HI, metadata={"user_id": "u-7", **TAGS}, **SAMPLING
    )
    body = fake_claude.last.body
    assert body["metadata"] == {"user_id": "u-7"}  # the only metadata Anthropic accepts
    assert not set(SAMPLING) & set(body) and "service_tier" not in body
    client.chat.completions.create(model="claude/claude-sonnet-4-5", messages=HI, user="u-8", metadata={"user_id": "x"})
    assert fake_claude.last.body["metadata"] == {"user_id": "u-8"}


def test_bedrock_gets_request_metadata(client: openai.OpenAI, fake_bedrock: FakeBedrock) -> None:
    out = client.chat.completions.create(
        model="amazon-bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", messages=HI, metadata=TAGS, **SAMPLING
    )
    assert out.choices[0].message.content == "Echo: hello"
    body = fake_bedrock.last.body
    assert body["requestMetadata"] == TAGS
    assert set(body) <= {"messages", "system", "inferenceConfig", "requestMetadata"}


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("presence_penalty", 2.5, "presence_penalty"),
        ("frequency_penalty", -3, "frequency_penalty"),
        ("metadata", {"team": 1}, "metadata"),
        ("metadata", {f"k{i}": "v" for i in range(17)}, "metadata"),
        ("metadata", {"k" * 65: "v"}, "metadata"),
    ],
)
def test_bad_sampling_values_are_a_400_naming_the_field(
    client: openai.OpenAI, gemini: FakeGemini, field: str, value: Any, param: str
) -> None:
    sent = len(gemini.requests)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gem/gemini-2.5-flash", messages=HI, extra_body={field: value})
    err = info.value.body
    assert isinstance(err, dict) and err["param"] == param and param in err["message"]
    assert len(gemini.requests) == sent
