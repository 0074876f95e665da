"""``POST /v1/embeddings`` end to end: the openai SDK → Switchboard → fakes speaking each provider's wire.

One fake (:mod:`tests.fakes.embeddings_upstream`) serves OpenAI, Azure, Mistral, Gemini, Vertex (express
mode) and Bedrock (SigV4 checked); every provider is configured at once, as a real deployment would be.
"""

from __future__ import annotations

import base64
import math
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from proxy.embeddings import CONCURRENCY
from proxy.pipeline import Caller, Outcome, Steps
from tests.conftest import Proxy, models_json
from tests.fakes.embeddings_upstream import Action, FakeEmbeddings, tokens, vector


@pytest.fixture
def fake() -> Iterator[FakeEmbeddings]:
    server = FakeEmbeddings().start()
    yield server
    server.stop()


@pytest.fixture
def proxy(
    fake: FakeEmbeddings, isolated_env: Path, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> Proxy:
    models_json(
        isolated_env,
        {
            "openai": {"baseUrl": fake.url + "/v1"},
            "google": {"baseUrl": fake.url + "/v1beta"},
            "google-vertex": {"baseUrl": fake.url},
            "mistral": {"baseUrl": fake.url + "/mistral/v1"},
        },
    )
    for name, value in {
        "OPENAI_API_KEY": fake.openai_key,
        "GEMINI_API_KEY": fake.google_key,
        "GOOGLE_CLOUD_API_KEY": fake.google_key,
        "MISTRAL_API_KEY": fake.mistral_key,
        "AZURE_OPENAI_BASE_URL": fake.url + "/openai/v1",
        "AZURE_OPENAI_API_KEY": fake.azure_key,
        "AZURE_OPENAI_DEPLOYMENT_NAME_MAP": "text-embedding-3-small=emb-small",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fake.url,
        "AWS_ACCESS_KEY_ID": "AKIDSTATIC0000000XYZ",
        "AWS_SECRET_ACCESS_KEY": "static-secret",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    return start_proxy()


def _vectors(result: Any) -> list[list[float]]:
    assert [d.index for d in result.data] == list(range(len(result.data)))
    assert all(d.object == "embedding" for d in result.data)
    # The SDK decodes base64 itself only when it chose the format; an explicit "base64" stays a string.
    return [_floats(d.embedding) if isinstance(d.embedding, str) else d.embedding for d in result.data]


def _floats(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _estimate(texts: list[str]) -> int:
    return sum(math.ceil(len(t.encode()) / 4) for t in texts)


def _raw_embeddings(proxy: Proxy, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = proxy.http().post("/v1/embeddings", json=body)
    return resp.status_code, resp.json()


# --- OpenAI-compatible: passthrough ----------------------------------------------------------


def test_openai_passthrough_forwards_the_body_with_the_model_replaced(fake: FakeEmbeddings, proxy: Proxy) -> None:
    client = proxy.client()
    result = client.embeddings.create(model="openai/text-embedding-3-small", input="hello there world")
    sent = fake.last.body
    # The SDK asks for base64 by default; the body is relayed as sent, only 'model' changed.
    assert sent == {"model": "text-embedding-3-small", "input": "hello there world", "encoding_format": "base64"}
    assert _vectors(result) == [vector("hello there world")]
    assert result.usage.prompt_tokens == 3

    raw = client.embeddings.with_raw_response.create(
        model="openai/text-embedding-3-small",
        input=["a b", "c"],
        encoding_format="float",
        dimensions=4,
        user="u-1",
        extra_body={"x_vendor_field": {"keep": True}},
    )
    assert fake.last.body == {
        "model": "text-embedding-3-small",
        "input": ["a b", "c"],
        "encoding_format": "float",
        "dimensions": 4,
        "user": "u-1",
        "x_vendor_field": {"keep": True},
    }
    assert _vectors(raw.parse()) == [vector("a b", 4), vector("c", 4)]


def test_token_arrays_pass_through(fake: FakeEmbeddings, proxy: Proxy) -> None:
    result = proxy.client().embeddings.create(model="openai/text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert fake.last.body["input"] == [[1, 2, 3], [4, 5]]
    assert len(result.data) == 2
    assert result.usage.prompt_tokens == 5


def test_azure_uses_the_deployment_and_api_version(fake: FakeEmbeddings, proxy: Proxy) -> None:
    result = proxy.client().embeddings.create(
        model="azure-openai-responses/text-embedding-3-small", input=["x y"], dimensions=3
    )
    call = fake.last
    assert call.path.startswith("/openai/v1/embeddings?api-version=")
    assert call.headers["api-key"] == fake.azure_key
    assert call.body == {"model": "emb-small", "input": ["x y"], "encoding_format": "base64", "dimensions": 3}
    assert _vectors(result) == [vector("x y", 3)]


def test_mistral_gets_its_own_field_names(fake: FakeEmbeddings, proxy: Proxy) -> None:
    result = proxy.client().embeddings.create(
        model="mistral/mistral-embed", input=["one", "two"], dimensions=5, user="someone"
    )
    assert fake.last.body == {
        "model": "mistral-embed",
        "input": ["one", "two"],
        "encoding_format": "base64",
        "output_dimension": 5,
    }
    assert _vectors(result) == [vector("one", 5), vector("two", 5)]


# --- translated providers -------------------------------------------------------------------


@pytest.mark.parametrize("encoding_format", ["base64", "float"])
def test_gemini_batch_embed_contents(fake: FakeEmbeddings, proxy: Proxy, encoding_format: str) -> None:
    texts = ["first text", "second", "third one here"]
    result = proxy.client().embeddings.create(
        model="google/gemini-embedding-001",
        input=texts,
        dimensions=4,
        encoding_format=encoding_format,  # type: ignore[arg-type]
    )
    call = fake.last
    assert call.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert call.body == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}, "outputDimensionality": 4}
            for t in texts
        ]
    }
    assert _vectors(result) == [vector(t, 4) for t in texts]
    assert result.model == "gemini-embedding-001"
    # Gemini gives no usage: Switchboard's estimate, ceil(UTF-8 bytes / 4) per text.
    assert result.usage.prompt_tokens == result.usage.total_tokens == _estimate(texts)


def test_base64_is_little_endian_float32(fake: FakeEmbeddings, proxy: Proxy) -> None:
    status, body = _raw_embeddings(
        proxy, {"model": "google/gemini-embedding-001", "input": "abc", "encoding_format": "base64"}
    )
    assert status == 200
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == vector("abc")
    status, body = _raw_embeddings(proxy, {"model": "google/gemini-embedding-001", "input": "abc"})
    assert body["data"][0]["embedding"] == vector("abc")  # OpenAI's default without encoding_format: floats


def test_gemini_batches_above_100_are_split_and_reindexed(fake: FakeEmbeddings, proxy: Proxy) -> None:
    texts = [f"text number {i}" for i in range(230)]
    result = proxy.client().embeddings.create(model="google/gemini-embedding-001", input=texts)
    sizes = [len(r.body["requests"]) for r in fake.requests]
    assert sorted(sizes) == [30, 100, 100]
    assert _vectors(result) == [vector(t) for t in texts]


def test_vertex_predict(fake: FakeEmbeddings, proxy: Proxy) -> None:
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    result = proxy.client().embeddings.create(model="google-vertex/text-embedding-005", input=texts, dimensions=6)
    call = fake.last
    assert call.path == "/v1/publishers/google/models/text-embedding-005:predict"
    assert call.headers["x-goog-api-key"] == fake.google_key
    assert call.body == {"instances": [{"content": t} for t in texts], "parameters": {"outputDimensionality": 6}}
    assert _vectors(result) == [vector(t, 6) for t in texts]
    assert result.usage.prompt_tokens == sum(tokens(t) for t in texts)  # Vertex's own token counts


def test_vertex_gemini_embedding_takes_one_text_per_call(fake: FakeEmbeddings, proxy: Proxy) -> None:
    texts = ["one", "two words", "three more words"]
    result = proxy.client().embeddings.create(model="google-vertex/gemini-embedding-001", input=texts)
    assert sorted(len(r.body["instances"]) for r in fake.requests) == [1, 1, 1]
    assert _vectors(result) == [vector(t) for t in texts]
    assert result.usage.prompt_tokens == 6


def test_bedrock_titan_one_call_per_text_concurrently_bounded(fake: FakeEmbeddings, proxy: Proxy) -> None:
    texts = [f"titan text {i}" for i in range(10)]
    # Each call waits until 4 are in flight (or all arrived): only concurrent calls get through, and more
    # than the bound would show in max_in_flight.
    fake.gate = (CONCURRENCY, len(texts))
    result = proxy.client().embeddings.create(model="amazon-bedrock/amazon.titan-embed-text-v2:0", input=texts)
    assert len(fake.requests) == 10
    assert all(r.path == "/model/amazon.titan-embed-text-v2%3A0/invoke" for r in fake.requests)
    assert sorted(r.body["inputText"] for r in fake.requests) == sorted(texts)
    assert all(r.body["normalize"] is True for r in fake.requests)
    assert fake.max_in_flight == CONCURRENCY == 4
    assert _vectors(result) == [vector(t) for t in texts]
    assert result.usage.prompt_tokens == 30  # Titan's inputTextTokenCount, summed


def test_bedrock_titan_dimensions(fake: FakeEmbeddings, proxy: Proxy) -> None:
    result = proxy.client().embeddings.create(
        model="amazon-bedrock/amazon.titan-embed-text-v2:0", input="just one", dimensions=256
    )
    assert fake.last.body == {"inputText": "just one", "normalize": True, "dimensions": 256}
    assert _vectors(result) == [vector("just one", 256)]


def test_bedrock_cohere_splits_at_96(fake: FakeEmbeddings, proxy: Proxy) -> None:
    texts = [f"doc {i}" for i in range(200)]
    result = proxy.client().embeddings.create(model="amazon-bedrock/cohere.embed-english-v3", input=texts)
    assert sorted(len(r.body["texts"]) for r in fake.requests) == [8, 96, 96]
    assert all(r.body["input_type"] == "search_document" for r in fake.requests)
    assert _vectors(result) == [vector(t) for t in texts]
    assert result.usage.prompt_tokens == 400  # Bedrock's x-amzn-bedrock-input-token-count, summed


# --- catalog --------------------------------------------------------------------------------


def test_models_lists_embedding_models(proxy: Proxy) -> None:
    ids = {m.id for m in proxy.client().models.list()}
    assert {
        "openai/text-embedding-3-small",
        "openai/text-embedding-3-large",
        "google/gemini-embedding-001",
        "google-vertex/text-embedding-005",
        "amazon-bedrock/amazon.titan-embed-text-v2:0",
        "amazon-bedrock/cohere.embed-english-v3",
        "azure-openai-responses/text-embedding-3-small",
        "mistral/mistral-embed",
    } <= ids


# --- usage for the gateway ------------------------------------------------------------------


class _Recording(Steps):
    meter = True

    def __init__(self) -> None:
        self.usages: list[tuple[Any, bool]] = []

    def finish(self, caller: Caller, ticket: object, outcome: Outcome) -> None:
        leg = outcome.leg
        self.usages.append((leg.usage() if leg is not None else None, bool(leg and leg.estimated)))


@pytest.mark.parametrize(
    ("model", "texts", "expected", "estimated"),
    [
        ("openai/text-embedding-3-small", ["a b c", "d"], 4, False),
        ("google/gemini-embedding-001", ["abcdefgh", "x"], 3, True),
        ("amazon-bedrock/amazon.titan-embed-text-v2:0", ["a b", "c d e"], 5, False),
    ],
)
def test_metered_usage(proxy: Proxy, model: str, texts: list[str], expected: int, estimated: bool) -> None:
    steps = _Recording()
    proxy.runtime.steps = steps
    proxy.client().embeddings.create(model=model, input=texts)
    [(usage, was_estimated)] = steps.usages
    assert usage.input_tokens == expected and usage.output_tokens == 0
    assert was_estimated is estimated


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "openai/text-embedding-3-small"}, "input"),
        ({"model": "openai/text-embedding-3-small", "input": ""}, "input"),
        ({"model": "openai/text-embedding-3-small", "input": []}, "input"),
        ({"model": "openai/text-embedding-3-small", "input": ["ok", 3]}, "input"),
        ({"model": "openai/text-embedding-3-small", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "openai/text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "openai/text-embedding-3-small", "input": "x", "user": 5}, "user"),
        ({"input": "x"}, "model"),
        ({"model": "google/gemini-embedding-001", "input": [[1, 2]]}, "input"),
        ({"model": "amazon-bedrock/cohere.embed-english-v3", "input": "x", "dimensions": 256}, "dimensions"),
        ({"model": "openai/gpt-4o", "input": "x"}, "model"),
    ],
)
def test_bad_requests_name_the_parameter(fake: FakeEmbeddings, proxy: Proxy, body: dict[str, Any], param: str) -> None:
    status, answer = _raw_embeddings(proxy, body)
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert answer["error"]["type"] == "invalid_request_error"
    assert fake.requests == []  # refused before any upstream call


def test_chat_model_refused_with_a_hint(proxy: Proxy) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client().embeddings.create(model="openai/gpt-4o", input="x")
    assert "chat model" in info.value.message and "openai/text-embedding" in info.value.message


def test_chat_request_to_an_embedding_model_is_refused(fake: FakeEmbeddings, proxy: Proxy) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client().chat.completions.create(
            model="openai/text-embedding-3-small", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.body["param"] == "model"  # type: ignore[index]


def test_upstream_error_keeps_status_and_masks_the_key(fake: FakeEmbeddings, proxy: Proxy) -> None:
    fake.push(
        Action(
            "error",
            status=429,
            body={
                "error": {
                    "code": 429,
                    "message": f"quota for key {fake.google_key} exceeded",
                    "status": "RESOURCE_EXHAUSTED",
                }
            },
        )
    )
    with pytest.raises(openai.RateLimitError) as info:
        proxy.client().embeddings.create(model="google/gemini-embedding-001", input="x")
    assert fake.google_key not in info.value.message
    assert "quota for key *** exceeded" in info.value.message


def test_a_failed_call_of_a_fan_out_fails_the_request(fake: FakeEmbeddings, proxy: Proxy) -> None:
    fake.push(
        Action(
            "error",
            status=400,
            body={"message": "Malformed input request"},
            headers={"x-amzn-errortype": "ValidationException:http://fake/"},
        )
    )
    with pytest.raises(openai.BadRequestError) as info:
        proxy.client().embeddings.create(model="amazon-bedrock/amazon.titan-embed-text-v2:0", input=["a", "b", "c"])
    assert "Malformed input request" in info.value.message


def test_an_answer_that_is_not_json_is_a_502(fake: FakeEmbeddings, proxy: Proxy) -> None:
    fake.push(Action("raw", chunks=[b"<html>gateway</html>"]))
    with pytest.raises(openai.APIStatusError) as info:
        proxy.client().embeddings.create(model="openai/text-embedding-3-small", input="x")
    assert info.value.status_code == 502


def test_a_client_that_leaves_cancels_every_call_of_a_fan_out(fake: FakeEmbeddings, proxy: Proxy) -> None:
    for _ in range(3):
        fake.push(Action("hang", seconds=60))
    client = proxy.client(timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.embeddings.create(model="amazon-bedrock/amazon.titan-embed-text-v2:0", input=["a", "b", "c"])
    assert len(fake.requests) == 3
    deadline = time.monotonic() + 10
    while fake.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.in_flight == 0  # each upstream call was cut when the client left, not left hanging
