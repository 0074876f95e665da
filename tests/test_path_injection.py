"""Model ids never steer the upstream URL: each one is a single percent-encoded path segment.

A client once sent ``google/../../../admin/delete?confirm=1&x=`` and the proxy posted, with the operator's
key, to ``/admin/delete?confirm=1&x=:generateContent``. Every test here drives the real proxy (``openai``
SDK → Switchboard → a fake upstream on 127.0.0.1) and checks the raw request target the fake received:
the intended endpoint with the id encoded, or, where the model travels in the body, the fixed endpoint
with the id untouched in the body. Nothing may reach another path or carry a query of the client's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Proxy, auth_json, models_json
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.azure_upstream import FakeAzure
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.cloudflare_upstream import FakeCloudflare
from tests.fakes.codex_upstream import FakeCodex, FakeCodexAuth
from tests.fakes.copilot_upstream import FakeCopilot, copilot_token
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.path_recording import RawPaths
from tests.fakes.server import FakeServer
from tests.fakes.vertex_upstream import FakeVertex

StartProxy = Callable[..., Proxy]

ATTACK = "../../../admin/delete?confirm=1&x="
#: ATTACK as one path segment: only RFC 3986 unreserved characters are left as they are.
ENCODED = "..%2F..%2F..%2Fadmin%2Fdelete%3Fconfirm%3D1%26x%3D"
HI = [{"role": "user", "content": "hi"}]


class _Gemini(RawPaths, FakeGemini):
    pass


class _Vertex(RawPaths, FakeVertex):
    pass


class _Bedrock(RawPaths, FakeBedrock):
    pass


class _Cloudflare(RawPaths, FakeCloudflare):
    pass


class _Azure(RawPaths, FakeAzure):
    pass


class _OpenAI(RawPaths, FakeOpenAI):
    pass


class _Anthropic(RawPaths, FakeAnthropic):
    pass


class _Codex(RawPaths, FakeCodex):
    pass


class _Copilot(RawPaths, FakeCopilot):
    pass


@pytest.fixture
def running() -> Iterator[Callable[[FakeServer], Any]]:
    fakes: list[FakeServer] = []

    def start(fake: FakeServer) -> Any:
        fakes.append(fake.start())
        return fake

    yield start
    for fake in fakes:
        fake.stop()


def _send(proxy: Proxy, model: str, *, stream: bool = False) -> None:
    """One chat request; the upstream's answer (often 404 for an odd id) does not matter here."""
    client = proxy.client()
    try:
        if stream:
            for _ in client.chat.completions.create(model=model, messages=HI, stream=True):  # type: ignore[call-overload]
                pass
        else:
            client.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
    except openai.APIStatusError:
        pass


def _body_models(fake: Any) -> list[Any]:
    return [r.body.get("model") for r in fake.requests if isinstance(getattr(r, "body", None), dict)]


# --- the model id in the path ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_gemini_model_id_is_one_segment(
    running: Any, isolated_env: Path, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    fake = running(_Gemini(api_key="gm-key"))
    models_json(isolated_env, {"google": {"baseUrl": fake.url + "/v1beta"}})
    monkeypatch.setenv("GEMINI_API_KEY", "gm-key")
    _send(start_proxy(), f"google/{ATTACK}", stream=stream)
    method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
    assert fake.raw_paths == [f"/v1beta/models/{ENCODED}{method}"]


def test_gemini_keeps_an_explicit_collection(
    running: Any, isolated_env: Path, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = running(_Gemini(api_key="gm-key"))
    models_json(isolated_env, {"google": {"baseUrl": fake.url + "/v1beta"}})
    monkeypatch.setenv("GEMINI_API_KEY", "gm-key")
    proxy = start_proxy()
    answer = proxy.client().chat.completions.create(model="google/models/gemini-2.5-flash", messages=HI)  # type: ignore[arg-type]
    assert answer.choices[0].message.content
    _send(proxy, f"google/tunedModels/{ATTACK}")
    assert fake.raw_paths == [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        f"/v1beta/tunedModels/{ENCODED}:generateContent",
    ]


@pytest.fixture
def vertex(running: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Vertex in express mode (an API key, no project in the path), its host pointed at the fake."""
    fake = running(_Vertex())
    monkeypatch.setenv("GOOGLE_CLOUD_API_KEY", fake.api_key)
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", fake.url)
    return fake


def test_vertex_gemini_model_id_is_one_segment(vertex: Any, start_proxy: StartProxy) -> None:
    _send(start_proxy(), f"google-vertex/{ATTACK}")
    assert vertex.raw_paths == [f"/v1/publishers/google/models/{ENCODED}:generateContent"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_vertex_claude_raw_predict_model_id_is_one_segment(vertex: Any, start_proxy: StartProxy, stream: bool) -> None:
    _send(start_proxy(), f"google-vertex/claude-sonnet-4-5/{ATTACK}", stream=stream)
    method = "streamRawPredict" if stream else "rawPredict"
    assert vertex.raw_paths == [f"/v1/publishers/anthropic/models/claude-sonnet-4-5%2F{ENCODED}:{method}"]


@pytest.fixture
def bedrock(running: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    fake = running(_Bedrock({"AKIDPATHTEST00000XYZ": ("path-secret", None)}))
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDPATHTEST00000XYZ")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "path-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return fake


def test_bedrock_model_id_is_one_signed_segment(bedrock: Any, start_proxy: StartProxy) -> None:
    model_id = f"anthropic.claude-x/{ATTACK}"
    _send(start_proxy(), f"amazon-bedrock/{model_id}")
    assert bedrock.raw_paths == [f"/model/anthropic.claude-x%2F{ENCODED}/converse"]
    (record,) = bedrock.requests
    assert record.model_id == model_id
    assert record.auth == "sigv4", bedrock.rejected  # the signature covers the encoded path as sent


@pytest.mark.parametrize(
    "models",
    [
        ("amazon-bedrock/..", "amazon-bedrock/."),
        ("google/..", "google/models/.", "google/tunedModels/.."),
        ("google-vertex/..",),
    ],
    ids=["bedrock", "gemini", "vertex"],
)
def test_dot_segment_ids_are_refused(
    models: tuple[str, ...],
    bedrock: Any,
    vertex: Any,
    running: Any,
    isolated_env: Path,
    start_proxy: StartProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gemini = running(_Gemini(api_key="gm-key"))
    monkeypatch.setenv("GEMINI_API_KEY", "gm-key")
    models_json(isolated_env, {"google": {"baseUrl": gemini.url + "/v1beta"}})
    proxy = start_proxy()
    for model in models:
        with pytest.raises(openai.BadRequestError) as err:
            proxy.client().chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
        body: Any = err.value.body
        dots = model.rsplit("/", 1)[1]
        assert body["param"] == "model" and f"{dots!r} is not a valid model id" in body["message"], body
    assert bedrock.raw_paths == [] and vertex.raw_paths == [] and gemini.raw_paths == []


# --- the model in the body: the URL is fixed ------------------------------------------------------------


def test_openai_completions_url_is_fixed(running: Any, isolated_env: Path, start_proxy: StartProxy) -> None:
    fake = running(_OpenAI())
    models_json(
        isolated_env,
        {"custom": {"baseUrl": fake.url + "/v1", "api": "openai-completions", "models": [{"id": "gpt-fake"}]}},
    )
    _send(start_proxy(), f"custom/{ATTACK}")
    assert fake.raw_paths == ["/v1/chat/completions"]
    assert _body_models(fake) == [ATTACK]


def test_anthropic_url_is_fixed(
    running: Any, isolated_env: Path, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = running(_Anthropic())
    models_json(isolated_env, {"anthropic": {"baseUrl": fake.url}})
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    _send(start_proxy(), f"anthropic/{ATTACK}")
    assert fake.raw_paths == ["/v1/messages"]
    assert _body_models(fake) == [ATTACK]


def test_azure_deployment_stays_in_the_body(
    running: Any, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = running(_Azure())
    monkeypatch.setenv("AZURE_OPENAI_BASE_URL", fake.url + "/openai/v1")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_NAME_MAP", f"gpt-4o={ATTACK}")
    proxy = start_proxy()
    _send(proxy, f"azure-openai-responses/{ATTACK}")
    _send(proxy, "azure-openai-responses/gpt-4o")
    assert fake.raw_paths == ["/openai/v1/responses?api-version=v1"] * 2
    assert _body_models(fake) == [ATTACK, ATTACK]


@pytest.mark.parametrize(
    ("provider", "model", "path"),
    [
        ("cloudflare-workers-ai", f"@cf/meta/{ATTACK}", "/client/v4/accounts/acct-0123/ai/v1/chat/completions"),
        ("cloudflare-ai-gateway", f"workers-ai/@cf/{ATTACK}", "/v1/acct-0123/gw-main/compat/chat/completions"),
        ("cloudflare-ai-gateway", f"gpt-x/{ATTACK}", "/v1/acct-0123/gw-main/openai/responses"),
        ("cloudflare-ai-gateway", f"claude-x/{ATTACK}", "/v1/acct-0123/gw-main/anthropic/v1/messages"),
    ],
)
def test_cloudflare_routes_are_fixed(
    provider: str,
    model: str,
    path: str,
    running: Any,
    isolated_env: Path,
    start_proxy: StartProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = running(_Cloudflare())
    models_json(
        isolated_env,
        {
            "cloudflare-ai-gateway": {"baseUrl": fake.url + "/v1/{CLOUDFLARE_ACCOUNT_ID}/{CLOUDFLARE_GATEWAY_ID}"},
            "cloudflare-workers-ai": {"baseUrl": fake.url + "/client/v4/accounts/{CLOUDFLARE_ACCOUNT_ID}/ai/v1"},
        },
    )
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "cf-token-0123456789abcdef")
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "acct-0123")
    monkeypatch.setenv("CLOUDFLARE_GATEWAY_ID", "gw-main")
    _send(start_proxy(), f"{provider}/{model}")
    assert fake.raw_paths == [path]


def test_codex_url_is_fixed(
    running: Any, isolated_env: Path, start_proxy: StartProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    oauth = running(FakeCodexAuth())
    backend = running(_Codex())
    monkeypatch.setenv("SWITCHBOARD_CODEX_AUTH_BASE", oauth.url)
    monkeypatch.setenv("SWITCHBOARD_CODEX_BASE_URL", backend.url + "/backend-api")
    tokens = oauth.issue()
    entry = {"type": "oauth", "access": tokens["access_token"], "refresh": tokens["refresh_token"]}
    auth_json(isolated_env, {"openai-codex": {**entry, "expires": 4102444800000, "accountId": "acct-1234"}})
    _send(start_proxy(), f"openai-codex/{ATTACK}")
    assert backend.raw_paths == ["/backend-api/codex/responses"]
    assert _body_models(backend) == [ATTACK]


@pytest.mark.parametrize(
    ("model", "path"),
    [(ATTACK, "/chat/completions"), (f"claude-sonnet-4-5/{ATTACK}", "/v1/messages"), (f"gpt-5/{ATTACK}", "/responses")],
    ids=["completions", "anthropic", "responses"],
)
def test_copilot_urls_are_fixed(
    model: str, path: str, running: Any, isolated_env: Path, start_proxy: StartProxy
) -> None:
    copilot = running(_Copilot())
    token = copilot_token(7)
    copilot.anthropic.api_key = token  # accepted: a 401 would be retried and recorded twice
    models_json(isolated_env, {"github-copilot": {"baseUrl": copilot.url}})
    entry = {"type": "oauth", "access": token, "refresh": "gho_unused", "expires": 4102444800000}
    auth_json(isolated_env, {"github-copilot": entry})
    _send(start_proxy(), f"github-copilot/{model}")
    assert copilot.raw_paths == [path]
