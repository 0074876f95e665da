"""Google Vertex AI: URL rules, credential detection, and the whole proxy against a fake Vertex.

The ADC tests run google-auth's real flows: a service-account key generated here signs a JWT-bearer
assertion that the fake token endpoint verifies; an authorized-user file takes the refresh-token grant.
Requests go through the real ``openai`` SDK → Switchboard → the fake Vertex, which checks the bearer
token and the exact resource URL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.cloud.vertex import ADAPTER, vertex_base_url, vertex_host
from providers.registry import DEFAULT_COMPAT, load_builtin_providers
from providers.wire.base import WireTarget
from tests.conftest import Proxy, auth_json, models_json, write_json
from tests.fakes.vertex_upstream import Action, FakeVertex

PROJECT = "test-project"
LOCATION = "us-central1"
EMAIL = "switchboard@test-project.iam.gserviceaccount.com"
BASE = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers"
CLAUDE = "claude-sonnet-4-5@20250929"
HI = [{"role": "user", "content": "hi there"}]


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fake(rsa_key: rsa.RSAPrivateKey) -> Iterator[FakeVertex]:
    server = FakeVertex(project=PROJECT, location=LOCATION, client_email=EMAIL, public_key_pem=_public_pem(rsa_key))
    server.start()
    yield server
    server.stop()


def write_service_account(path: Path, fake: FakeVertex, key: rsa.RSAPrivateKey, project: str | None = PROJECT) -> Path:
    info: dict[str, Any] = {
        "type": "service_account",
        "private_key_id": "key-1",
        "private_key": _pem(key),
        "client_email": EMAIL,
        "client_id": "1234567890",
        "token_uri": fake.token_uri,
    }
    if project:
        info["project_id"] = project
    return write_json(path, info)


@pytest.fixture
def adc(
    fake: FakeVertex, rsa_key: rsa.RSAPrivateKey, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A service-account ADC, project and location set, and Vertex's host pointed at the fake."""
    path = write_service_account(tmp_path / "sa.json", fake, rsa_key)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", LOCATION)
    models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
    return path


def _vertex() -> Any:
    return next(p for p in load_builtin_providers() if p.id == "google-vertex")


def _chat(proxy: Proxy, model: str, *, stream: bool = False) -> str:
    client = proxy.client()
    if not stream:
        answer = client.chat.completions.create(model=model, messages=HI)  # type: ignore[arg-type]
        return answer.choices[0].message.content or ""
    chunks = client.chat.completions.create(model=model, messages=HI, stream=True)  # type: ignore[call-overload]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- URL rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "host"),
    [
        ("global", "https://aiplatform.googleapis.com"),
        ("us", "https://aiplatform.us.rep.googleapis.com"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com"),
        ("europe-west4", "https://europe-west4-aiplatform.googleapis.com"),
        ("us-central1", "https://us-central1-aiplatform.googleapis.com"),
    ],
)
def test_host_per_location(location: str, host: str) -> None:
    assert vertex_host(location) == host
    assert vertex_base_url("p1", location) == f"{host}/v1/projects/p1/locations/{location}/publishers/google"


def test_express_mode_has_no_project_and_uses_the_global_host() -> None:
    assert vertex_base_url(None, None) == "https://aiplatform.googleapis.com/v1/publishers/google"


@pytest.mark.parametrize(
    ("custom", "expected"),
    [
        ("http://127.0.0.1:9", "http://127.0.0.1:9/v1/projects/p/locations/eu/publishers/google"),
        ("https://gw.example/vertex/v1/", "https://gw.example/vertex/v1/projects/p/locations/eu/publishers/google"),
    ],
)
def test_custom_base_replaces_the_host(custom: str, expected: str) -> None:
    assert vertex_base_url("p", "eu", custom) == expected


def test_claude_models_speak_anthropic_messages_the_rest_gemini() -> None:
    provider = _vertex()
    assert ADAPTER.api_for(provider, CLAUDE, None) == "anthropic-messages"
    assert ADAPTER.api_for(provider, "gemini-2.5-flash", provider.model("gemini-2.5-flash")) == "google-vertex"


# --- detection (cheap, no network) --------------------------------------------------------------------------


def test_available_needs_adc_file_project_and_location(tmp_path: Path, fake: FakeVertex, rsa_key: Any) -> None:
    provider = _vertex()
    path = write_service_account(tmp_path / "sa.json", fake, rsa_key, project=None)
    full = {"GOOGLE_APPLICATION_CREDENTIALS": str(path), "GOOGLE_CLOUD_PROJECT": "p", "GOOGLE_CLOUD_LOCATION": "eu"}
    assert ADAPTER.available(provider, False, full)
    assert ADAPTER.describe(provider, False, full) == f"ADC service account {EMAIL}, project p, location eu"
    assert not ADAPTER.available(provider, False, {**full, "GOOGLE_CLOUD_LOCATION": ""})
    assert not ADAPTER.available(provider, False, {**full, "GOOGLE_CLOUD_PROJECT": ""})
    assert ADAPTER.available(provider, False, {**full, "GOOGLE_CLOUD_PROJECT": "", "GCLOUD_PROJECT": "p"})
    assert not ADAPTER.available(provider, False, {**full, "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "no")})
    assert ADAPTER.available(provider, True, {})
    assert ADAPTER.describe(provider, True, {}) is None


def test_gcloud_user_credentials_are_found_under_home(tmp_path: Path) -> None:
    provider = _vertex()
    env = {"HOME": str(tmp_path), "GOOGLE_CLOUD_LOCATION": "global"}
    assert not ADAPTER.available(provider, False, env)
    write_json(
        tmp_path / ".config/gcloud/application_default_credentials.json",
        {
            "type": "authorized_user",
            "client_id": "c",
            "client_secret": "s",
            "refresh_token": "r",
            "quota_project_id": "q",
        },
    )
    assert ADAPTER.available(provider, False, env)  # the file's quota project counts
    description = ADAPTER.describe(provider, False, env)
    assert description == "ADC user credentials (gcloud), project q, location global"


def test_models_listing_reports_the_adc_source(adc: Path, start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    assert proxy.runtime.credentials.source_of(_vertex()) == (
        f"ADC service account {EMAIL}, project {PROJECT}, location {LOCATION}"
    )


# --- through the proxy: ADC -------------------------------------------------------------------------------


def test_gemini_with_service_account(adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    assert _chat(proxy, "google-vertex/gemini-2.5-flash") == "Echo: hi there"
    call = fake.calls[-1]
    assert call.path == f"{BASE}/google/models/gemini-2.5-flash:generateContent"
    assert call.headers["authorization"] == "Bearer ya29.fake-token-1"
    assert "x-goog-api-key" not in call.headers
    assert [r["grant_type"] for r in fake.token_requests] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]


def test_gemini_streamed(adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    assert _chat(proxy, "google-vertex/gemini-2.5-pro", stream=True) == "Echo: hi there"
    assert fake.calls[-1].path == f"{BASE}/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"


def test_claude_on_vertex_raw_predict(adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    assert _chat(proxy, f"google-vertex/{CLAUDE}") == "Echo: hi there"
    call = fake.calls[-1]
    assert call.path == f"{BASE}/anthropic/models/{CLAUDE}:rawPredict"
    assert call.body["anthropic_version"] == "vertex-2023-10-16"
    assert "model" not in call.body
    assert "anthropic-version" not in call.headers
    assert call.headers["authorization"] == "Bearer ya29.fake-token-1"


def test_claude_on_vertex_streamed(adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    assert _chat(proxy, f"google-vertex/{CLAUDE}", stream=True) == "Echo: hi there"
    call = fake.calls[-1]
    assert call.path == f"{BASE}/anthropic/models/{CLAUDE}:streamRawPredict"
    assert call.body["stream"] is True
    assert "model" not in call.body


def test_token_is_cached_while_valid(adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    for _ in range(3):
        _chat(proxy, "google-vertex/gemini-2.5-flash")
    assert len(fake.token_requests) == 1
    assert {c.headers["authorization"] for c in fake.calls} == {"Bearer ya29.fake-token-1"}


def test_revoked_token_is_dropped_and_the_request_retried(
    adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]
) -> None:
    """Google revokes a token before its expiry: the 401 makes the proxy fetch a new one and retry once."""
    proxy = start_proxy()
    _chat(proxy, "google-vertex/gemini-2.5-flash")
    for token in fake._issued:  # revoked: Vertex now answers 401 for every token issued so far
        fake._issued[token] = 0.0
    _chat(proxy, "google-vertex/gemini-2.5-flash")
    assert len(fake.token_requests) == 2
    assert [c.headers["authorization"] for c in fake.calls] == [
        "Bearer ya29.fake-token-1",
        "Bearer ya29.fake-token-1",
        "Bearer ya29.fake-token-2",
    ]


def test_token_near_expiry_is_refreshed(adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]) -> None:
    fake.expires_in = 60  # inside google-auth's refresh margin: stale at once
    proxy = start_proxy()
    _chat(proxy, "google-vertex/gemini-2.5-flash")
    _chat(proxy, "google-vertex/gemini-2.5-flash")
    assert len(fake.token_requests) == 2
    assert [c.headers["authorization"] for c in fake.calls] == ["Bearer ya29.fake-token-1", "Bearer ya29.fake-token-2"]


def _concurrently(proxy: Proxy, n: int) -> list[str]:
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(_chat(proxy, "google-vertex/gemini-2.5-flash"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def test_concurrent_cold_requests_fetch_one_token(
    adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]
) -> None:
    fake.token_delay = 0.3
    proxy = start_proxy()
    assert _concurrently(proxy, 6) == ["Echo: hi there"] * 6
    assert len(fake.token_requests) == 1


def test_concurrent_requests_share_one_refresh(adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]) -> None:
    fake.expires_in = 60
    proxy = start_proxy()
    _chat(proxy, "google-vertex/gemini-2.5-flash")
    fake.token_delay = 0.3
    assert _concurrently(proxy, 6) == ["Echo: hi there"] * 6
    assert len(fake.token_requests) == 2


def test_config_reload_keeps_the_token_until_the_adc_file_changes(
    adc: Path, fake: FakeVertex, rsa_key: Any, start_proxy: Callable[..., Proxy]
) -> None:
    proxy = start_proxy()
    _chat(proxy, "google-vertex/gemini-2.5-flash")
    proxy.runtime.credentials.invalidate()  # what a models.json / auth.json change does
    _chat(proxy, "google-vertex/gemini-2.5-flash")
    assert len(fake.token_requests) == 1
    info = json.loads(adc.read_text())
    write_json(adc, {**info, "private_key_id": "key-2"})  # e.g. a rotated key file
    proxy.runtime.credentials.invalidate()
    _chat(proxy, "google-vertex/gemini-2.5-flash")
    assert len(fake.token_requests) == 2
    assert fake.calls[-1].headers["authorization"] == "Bearer ya29.fake-token-2"


def test_authorized_user_from_gcloud(
    fake: FakeVertex,
    isolated_env: Path,
    start_proxy: Callable[..., Proxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # google-auth always sends authorized-user grants to Google's endpoint; point that at the fake.
    monkeypatch.setattr("google.oauth2.credentials._GOOGLE_OAUTH2_TOKEN_ENDPOINT", fake.token_uri)
    fake.users["client-1.apps.example"] = ("secret-1", "refresh-1")
    home = Path(str(Path.home()))
    write_json(
        home / ".config/gcloud/application_default_credentials.json",
        {
            "type": "authorized_user",
            "client_id": "client-1.apps.example",
            "client_secret": "secret-1",
            "refresh_token": "refresh-1",
            "quota_project_id": PROJECT,
        },
    )
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", LOCATION)
    monkeypatch.setenv("PATH", "")  # no gcloud to ask for its configured project
    models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
    proxy = start_proxy()
    assert _chat(proxy, "google-vertex/gemini-2.5-flash", stream=True) == "Echo: hi there"
    call = fake.calls[-1]
    assert call.path == f"{BASE}/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert call.headers["x-goog-user-project"] == PROJECT
    assert fake.token_requests[0]["grant_type"] == "refresh_token"


def test_base_url_from_env(
    fake: FakeVertex, rsa_key: Any, tmp_path: Path, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_service_account(tmp_path / "sa.json", fake, rsa_key)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("GCLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", LOCATION)
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", fake.url)
    proxy = start_proxy()
    assert _chat(proxy, "google-vertex/gemini-2.5-flash") == "Echo: hi there"
    assert fake.calls[-1].path == f"{BASE}/google/models/gemini-2.5-flash:generateContent"


def test_access_token_is_scrubbed_from_errors(adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]) -> None:
    proxy = start_proxy()
    _chat(proxy, "google-vertex/gemini-2.5-flash")
    echoed = {"error": {"code": 400, "message": "bad token ya29.fake-token-1 here", "status": "INVALID_ARGUMENT"}}
    fake.push(Action("error", status=400, body=echoed))
    with pytest.raises(openai.BadRequestError) as info:
        _chat(proxy, "google-vertex/gemini-2.5-flash")
    assert "ya29.fake-token-1" not in str(info.value)
    assert "bad token *** here" in str(info.value)


# --- API-key (express) mode -----------------------------------------------------------------------------------


def test_api_key_from_env_uses_express_mode(
    fake: FakeVertex, isolated_env: Path, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_API_KEY", fake.api_key)
    models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
    proxy = start_proxy()
    assert _chat(proxy, "google-vertex/gemini-2.5-flash", stream=True) == "Echo: hi there"
    call = fake.calls[-1]
    assert call.path == "/v1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert call.headers["x-goog-api-key"] == fake.api_key
    assert "authorization" not in call.headers
    assert fake.token_requests == []


def test_api_key_from_cli_and_auth_json(
    fake: FakeVertex, isolated_env: Path, start_proxy: Callable[..., Proxy]
) -> None:
    models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
    auth_json(isolated_env, {"google-vertex": {"type": "api_key", "key": "wrong-key-from-auth-json"}})
    proxy = start_proxy(cli_keys={"google-vertex": fake.api_key})
    assert _chat(proxy, "google-vertex/gemini-2.5-flash") == "Echo: hi there"
    assert fake.calls[-1].headers["x-goog-api-key"] == fake.api_key


# --- what is missing, and how to fix it ----------------------------------------------------------------------


def _error_of(proxy: Proxy) -> tuple[int, str]:
    with pytest.raises(openai.APIStatusError) as info:
        _chat(proxy, "google-vertex/gemini-2.5-flash")
    return info.value.status_code, str(info.value)


def test_no_credentials_says_what_to_run(
    fake: FakeVertex, isolated_env: Path, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", LOCATION)
    models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
    status, message = _error_of(start_proxy())
    assert status == 401
    assert "gcloud auth application-default login" in message
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert fake.calls == []


def test_missing_adc_file_names_the_path(
    fake: FakeVertex, isolated_env: Path, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/sa.json")
    models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
    status, message = _error_of(start_proxy())
    assert status == 401
    assert "GOOGLE_APPLICATION_CREDENTIALS points at /nonexistent/sa.json" in message


@pytest.mark.parametrize(
    ("unset", "fix"),
    [
        ("GOOGLE_CLOUD_PROJECT", "export GOOGLE_CLOUD_PROJECT="),
        ("GOOGLE_CLOUD_LOCATION", "export GOOGLE_CLOUD_LOCATION="),
    ],
)
def test_missing_project_or_location_says_what_to_export(
    fake: FakeVertex,
    rsa_key: Any,
    tmp_path: Path,
    isolated_env: Path,
    start_proxy: Callable[..., Proxy],
    monkeypatch: pytest.MonkeyPatch,
    unset: str,
    fix: str,
) -> None:
    path = write_service_account(tmp_path / "sa.json", fake, rsa_key, project=None)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", LOCATION)
    monkeypatch.delenv(unset)
    models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
    status, message = _error_of(start_proxy())
    assert status == 401
    assert fix in message
    assert fake.calls == []


def test_project_from_the_service_account_file(
    fake: FakeVertex,
    rsa_key: Any,
    tmp_path: Path,
    isolated_env: Path,
    start_proxy: Callable[..., Proxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write_service_account(tmp_path / "sa.json", fake, rsa_key)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", LOCATION)
    models_json(isolated_env, {"google-vertex": {"baseUrl": fake.url}})
    assert _chat(start_proxy(), "google-vertex/gemini-2.5-flash") == "Echo: hi there"
    assert fake.calls[-1].project == PROJECT


def test_token_endpoint_refusal_is_401_with_the_fix(
    adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy]
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.public_key_pem = _public_pem(other)  # the assertion's signature no longer verifies
    status, message = _error_of(start_proxy())
    assert status == 401
    assert "Google refused to issue an access token" in message
    assert "gcloud auth application-default login" in message
    assert fake.calls == []


def test_invalid_location_is_rejected_before_any_request(
    adc: Path, fake: FakeVertex, start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "us-central1/../../evil")
    status, message = _error_of(start_proxy())
    assert status == 400
    assert "GOOGLE_CLOUD_LOCATION" in message
    assert fake.calls == []


def test_description_carries_no_secret(adc: Path) -> None:
    description = ADAPTER.describe(_vertex(), False, {"GOOGLE_APPLICATION_CREDENTIALS": str(adc)})
    assert description is not None
    assert "PRIVATE KEY" not in description
    assert "key-1" not in description


def test_rejected_credentials_point_at_adc_not_gemini_key() -> None:
    from providers.wire import translating_wire

    wire = translating_wire("google-vertex")
    assert wire is not None
    target = WireTarget("google-vertex", "Google Vertex AI", "https://x", "gemini-2.5-flash", None, DEFAULT_COMPAT)
    body = b'{"error": {"code": 403, "message": "Permission denied", "status": "PERMISSION_DENIED"}}'
    err = wire.error(target, 403, body, {})
    assert err.status == 403 and "gcloud auth application-default login" in err.message
    assert "GEMINI_API_KEY" not in err.message
