"""Amazon Bedrock: the credential chain, region and endpoint rules, SigV4 verified by the fake, end to end.

Credential tests drive the adapter (resolve → wire build → finalize) and send with the project's own
upstream client, so the fake sees exactly the bytes the proxy would send and verifies the signature.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from providers.canonical import Message, Request, Text
from providers.cloud.base import RequestContext
from providers.cloud.bedrock import ADAPTER
from providers.errors import MissingCredentials
from providers.registry import Provider, load_builtin_providers
from providers.transport import AiohttpClient, Timeouts
from providers.wire.base import UpstreamCall, WireTarget
from providers.wire.bedrock_converse import API
from tests.fakes.bedrock_upstream import Action, FakeBedrock, sign
from tests.fakes.server import FakeServer

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
ARN = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
CREDS: dict[str, tuple[str, str | None]] = {
    "AKIDSTATIC0000000XYZ": ("static-secret", None),
    "ASIATEMP000000000XYZ": ("temp-secret", "temp-token"),
    "AKIDPROFILE000000XYZ": ("profile-secret", None),
    "ASIAECS0000000000XYZ": ("ecs-secret", "ecs-token"),
    "ASIAIRSA000000000XYZ": ("irsa-secret", "irsa-token"),
}
BEARER = "bedrock-api-key-abc123"


@pytest.fixture
def fake() -> Iterator[FakeBedrock]:
    server = FakeBedrock(dict(CREDS), {BEARER}).start()
    yield server
    server.stop()


def provider() -> Provider:
    return next(p for p in load_builtin_providers() if p.id == "amazon-bedrock")


async def _exchange(model_id: str, key: str | None, stream: bool) -> tuple[int, bytes, str]:
    p = provider()
    auth = await ADAPTER.resolve(p, key, "test", dict(os.environ))
    target = WireTarget(p.id, p.name, auth.base_url, model_id, p.model(model_id), p.compat, auth.headers)
    call = API.build(Request(model_id, [Message("user", [Text("hello")])], stream=stream), target)
    merged = UpstreamCall(call.url, call.body, {**auth.headers, **call.headers})
    final = await ADAPTER.finalize(merged, auth, target, RequestContext({}, API.name))
    client = AiohttpClient(Timeouts())
    try:
        resp = await client.send("POST", final.url, final.headers, final.body)
        return resp.status, await resp.read(), final.url
    finally:
        await client.close()


def exchange(model_id: str = CLAUDE, key: str | None = None, stream: bool = False) -> tuple[int, bytes, str]:
    return asyncio.run(_exchange(model_id, key, stream))


def point_at(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.url)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- credential chain --------------------------------------------------------------------------


def test_static_keys_with_session_token_sign(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at(fake, monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIATEMP000000000XYZ")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "temp-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "temp-token")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    status, body, _ = exchange()
    assert status == 200, body
    assert json.loads(body)["output"]["message"]["content"] == [{"text": "Echo: hello"}]
    rec = fake.last
    assert (rec.auth, rec.access_key, rec.region) == ("sigv4", "ASIATEMP000000000XYZ", "us-west-2")
    assert "x-amz-security-token" in rec.signed_headers and rec.model_id == CLAUDE
    assert rec.raw_path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"


def test_a_wrong_secret_is_refused_by_the_fake(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at(fake, monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTATIC0000000XYZ")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    status, body, _ = exchange()
    assert status == 403 and b"signature we calculated does not match" in body


def test_profile_with_region_from_config(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path(os.environ["HOME"])
    write(
        home / ".aws/credentials",
        "[dev]\naws_access_key_id = AKIDPROFILE000000XYZ\naws_secret_access_key = profile-secret\n",
    )
    write(home / ".aws/config", "[profile dev]\nregion = eu-west-3\n")
    point_at(fake, monkeypatch)
    monkeypatch.setenv("AWS_PROFILE", "dev")
    assert ADAPTER.describe(provider(), False, os.environ) == "AWS profile 'dev'"
    status, body, _ = exchange(stream=True)
    assert status == 200, body
    assert (fake.last.access_key, fake.last.region, fake.last.action) == (
        "AKIDPROFILE000000XYZ",
        "eu-west-3",
        "converse-stream",
    )


def test_default_profile_from_shared_file_counts_as_available(monkeypatch: pytest.MonkeyPatch) -> None:
    home = Path(os.environ["HOME"])
    assert not ADAPTER.available(provider(), False, os.environ)
    write(home / ".aws/config", "[default]\nregion = eu-west-1\n")
    assert not ADAPTER.available(provider(), False, os.environ)  # a region alone is no credential
    write(home / ".aws/credentials", "[default]\naws_access_key_id = AKIDPROFILE000000XYZ\naws_secret_access_key = x\n")
    assert ADAPTER.available(provider(), False, os.environ)


def test_bearer_token_env_and_stored_key(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    point_at(fake, monkeypatch)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", BEARER)
    assert ADAPTER.describe(provider(), True, os.environ) == "AWS_BEARER_TOKEN_BEDROCK"
    status, body, _ = exchange(key=BEARER)
    assert status == 200, body
    assert fake.last.auth == "bearer" and "x-amz-date" not in fake.last.headers
    status, body, _ = exchange(key="wrong-token")
    assert status == 403 and fake.last.auth == "none"


def test_skip_auth_sends_no_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBedrock({}, set(), allow_anonymous=True).start()
    try:
        point_at(fake, monkeypatch)
        monkeypatch.setenv("AWS_BEDROCK_SKIP_AUTH", "1")
        assert ADAPTER.available(provider(), False, os.environ)
        status, body, _ = exchange(key=BEARER)
        assert status == 200, body
        assert "authorization" not in fake.last.headers and fake.last.auth == "none"
    finally:
        fake.stop()


def test_region_and_default_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", BEARER)
    auth = asyncio.run(ADAPTER.resolve(provider(), BEARER, "env", dict(os.environ)))
    assert auth.base_url == "https://bedrock-runtime.us-east-1.amazonaws.com"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    auth = asyncio.run(ADAPTER.resolve(provider(), BEARER, "env", dict(os.environ)))
    assert auth.base_url == "https://bedrock-runtime.ap-south-1.amazonaws.com"
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    auth = asyncio.run(ADAPTER.resolve(provider(), BEARER, "env", dict(os.environ)))
    assert auth.base_url == "https://bedrock-runtime.us-west-2.amazonaws.com"
    assert auth.headers["authorization"] == f"Bearer {BEARER}"


def test_arn_region_changes_host_and_signing_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTATIC0000000XYZ")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "static-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    async def run() -> UpstreamCall:
        p = provider()
        auth = await ADAPTER.resolve(p, None, "env", dict(os.environ))
        target = WireTarget(p.id, p.name, auth.base_url, ARN, None, p.compat, auth.headers)
        call = API.build(Request(ARN, [Message("user", [Text("x")])]), target)
        return await ADAPTER.finalize(call, auth, target, RequestContext({}, API.name))

    final = asyncio.run(run())
    assert final.url.startswith("https://bedrock-runtime.eu-west-1.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aeu-west-1")
    assert "/eu-west-1/bedrock/aws4_request" in final.headers["authorization"]


def test_arn_model_signature_verifies_at_an_endpoint_override(
    fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(fake, monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTATIC0000000XYZ")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "static-secret")
    status, body, url = exchange(ARN, stream=True)
    assert status == 200, body
    assert url.startswith(
        fake.url + "/model/arn%3Aaws%3Abedrock%3Aeu-west-1%3A123456789012%3Aapplication-inference-profile%2Fabc123"
    )
    assert (fake.last.model_id, fake.last.region) == (ARN, "eu-west-1")


class FakeECS(FakeServer):
    """ECS's credential endpoint. With a ``gate``, each answer waits until the test opens it (at most 10 s)
    and records whether it was opened in time in ``gated``."""

    def __init__(self, expiration: str = "2099-01-01T00:00:00Z", gate: threading.Event | None = None) -> None:
        super().__init__()
        self.expiration = expiration
        self.gate = gate
        self.gated: list[bool] = []
        self.active = self.max_active = 0

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/creds", self._creds)

    async def _creds(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        if self.gate is not None:
            self.gated.append(await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 10))
        self.active -= 1
        return web.json_response(
            {
                "AccessKeyId": "ASIAECS0000000000XYZ",
                "SecretAccessKey": "ecs-secret",
                "Token": "ecs-token",
                "Expiration": self.expiration,
            }
        )


def test_ecs_container_credentials(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch) -> None:
    ecs = FakeECS().start()
    try:
        point_at(fake, monkeypatch)
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ecs.url + "/creds")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-auth")
        assert ADAPTER.describe(provider(), False, os.environ) == "ECS task role"
        status, body, _ = exchange()
        assert status == 200, body
        assert (fake.last.access_key, fake.last.region) == ("ASIAECS0000000000XYZ", "us-east-1")
        assert ecs.requests[0].get("Authorization") == "ecs-auth"
    finally:
        ecs.stop()


def test_refreshable_credentials_refresh_off_the_loop_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Expiring inside botocore's advisory refresh window (15 min): requests want a refresh; one at a time.
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=12)
    gate = threading.Event()
    ecs = FakeECS(soon.strftime("%Y-%m-%dT%H:%M:%SZ"), gate).start()
    try:
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", ecs.url + "/creds")
        gate.set()  # the first load (resolve) is not under test

        async def run() -> list[UpstreamCall]:
            p = provider()
            auth = await ADAPTER.resolve(p, None, "ecs", dict(os.environ))
            target = WireTarget(p.id, p.name, auth.base_url, CLAUDE, None, p.compat, auth.headers)
            call = API.build(Request(CLAUDE, [Message("user", [Text("x")])]), target)
            gate.clear()
            seen = len(ecs.requests)
            finalizing = asyncio.gather(
                *(ADAPTER.finalize(call, auth, target, RequestContext({}, API.name)) for _ in range(5))
            )
            # The refresh now waits on the gate; only a loop that botocore's blocking fetch left free can open it.
            deadline = time.monotonic() + 10
            while len(ecs.requests) == seen and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            gate.set()
            return list(await finalizing)

        calls = asyncio.run(run())
        assert all("ASIAECS0000000000XYZ" in c.headers["authorization"] for c in calls)
        assert ecs.gated and all(ecs.gated), "the refresh blocked the event loop"
        assert len(ecs.requests) >= 2 and ecs.max_active == 1
    finally:
        ecs.stop()


_STS_XML = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials><AccessKeyId>ASIAIRSA000000000XYZ</AccessKeyId><SecretAccessKey>irsa-secret</SecretAccessKey>
      <SessionToken>irsa-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
    <SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn><AssumedRoleId>AROA1:s</AssumedRoleId></AssumedRoleUser>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""


class FakeSTS(FakeServer):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/", self._sts)

    async def _sts(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(form)
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("WebIdentityToken") != "jwt-token":
            return web.Response(status=400, text="bad request")
        return web.Response(text=_STS_XML, content_type="text/xml")


def test_irsa_web_identity(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sts = FakeSTS().start()
    try:
        token = tmp_path / "token"
        token.write_text("jwt-token")
        point_at(fake, monkeypatch)
        monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
        monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r")
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        monkeypatch.setenv("AWS_REGION", "us-east-2")
        assert ADAPTER.describe(provider(), False, os.environ) == "web identity (IRSA)"
        status, body, _ = exchange()
        assert status == 200, body
        assert (fake.last.access_key, fake.last.region) == ("ASIAIRSA000000000XYZ", "us-east-2")
        assert sts.requests[0]["RoleArn"] == "arn:aws:iam::123456789012:role/r"
    finally:
        sts.stop()


def test_nothing_configured_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert not ADAPTER.available(provider(), False, os.environ)
    with pytest.raises(MissingCredentials, match=r"AWS_PROFILE.*AWS_BEARER_TOKEN_BEDROCK"):
        asyncio.run(ADAPTER.resolve(provider(), None, "ambient", dict(os.environ)))


def test_describe_masks_the_access_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAABCDEFGHIJKLMXYZ")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    assert ADAPTER.describe(provider(), False, os.environ) == "AWS access key AKIA…XYZ (env)"
    assert ADAPTER.api_for(provider(), CLAUDE, None) == "bedrock-converse-stream"


# --- end to end through the proxy with the openai SDK ------------------------------------------------


@pytest.fixture
def client(fake: FakeBedrock, start_proxy: Any, monkeypatch: pytest.MonkeyPatch) -> openai.OpenAI:
    point_at(fake, monkeypatch)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSTATIC0000000XYZ")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "static-secret")
    return start_proxy().client()  # type: ignore[no-any-return]


MODEL = f"amazon-bedrock/{CLAUDE}"
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def test_e2e_plain_chat(client: openai.OpenAI, fake: FakeBedrock) -> None:
    out = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi there"}])
    assert out.choices[0].message.content == "Echo: hi there" and out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.prompt_tokens == 29  # 21 + cache read 5 + cache write 3
    assert fake.last.auth == "sigv4" and fake.last.access_key == "AKIDSTATIC0000000XYZ"
    assert fake.last.body["messages"][0]["content"][-1] == {"cachePoint": {"type": "default"}}


def test_e2e_streaming_with_usage(client: openai.OpenAI, fake: FakeBedrock) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "one two"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: one two"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    assert fake.last.action == "converse-stream"


@pytest.mark.parametrize("stream", [False, True])
def test_e2e_two_parallel_tool_calls_round_trip(client: openai.OpenAI, fake: FakeBedrock, stream: bool) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in two cities?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    calls = first.choices[0].message.tool_calls or []
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Tokyo", "Paris"]  # type: ignore[union-attr]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    for call, answer in zip(calls, ("sunny", "rainy"), strict=True):
        messages.append({"role": "tool", "tool_call_id": call.id, "content": answer})
    if stream:
        chunks: Any = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], stream=True)  # type: ignore[arg-type,list-item]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])  # type: ignore[arg-type,list-item]
        text = second.choices[0].message.content or ""
    assert text == "Results: sunny; rainy"
    assert len(fake.last.body["messages"]) == 3  # both results merged in one user message


def test_e2e_image(client: openai.OpenAI, fake: FakeBedrock) -> None:
    out = client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ],
    )
    assert out.choices[0].message.content == "I see a png image."
    assert fake.last.body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG}}}


def test_e2e_reasoning_signature_kept_across_turns(client: openai.OpenAI, fake: FakeBedrock) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "think first"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, reasoning_effort="high")  # type: ignore[call-overload]
    message = first.choices[0].message
    thought = getattr(message, "reasoning_content", None)
    assert thought == "The user sent 1 message(s); I answer plainly."
    messages.append(message.model_dump(exclude_none=True))
    messages.append({"role": "user", "content": "and again"})
    client.chat.completions.create(model=MODEL, messages=messages, reasoning_effort="high")  # type: ignore[call-overload]
    replayed = fake.last.body["messages"][1]["content"][0]
    assert replayed == {"reasoningContent": {"reasoningText": {"text": thought, "signature": sign(thought)}}}


def test_e2e_throttling_mid_stream_is_an_error_event(client: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.push(Action("exception", body="throttlingException", after_events=2))
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a b"}], stream=True)
    got: list[Any] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk)
    assert "Too many requests" in str(info.value)
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "Echo"


def test_e2e_http_throttling_is_429(client: openai.OpenAI, fake: FakeBedrock) -> None:
    fake.push(
        Action(
            "error", status=429, body={"message": "Rate exceeded"}, headers={"x-amzn-errortype": "ThrottlingException"}
        )
    )
    with pytest.raises(openai.RateLimitError, match="Rate exceeded"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])


def test_e2e_application_inference_profile_arn(client: openai.OpenAI, fake: FakeBedrock) -> None:
    out = client.chat.completions.create(model=f"amazon-bedrock/{ARN}", messages=[{"role": "user", "content": "arn"}])
    assert out.choices[0].message.content == "Echo: arn"
    assert (fake.last.model_id, fake.last.region, fake.last.auth) == (ARN, "eu-west-1", "sigv4")


def test_e2e_models_lists_bedrock_when_credentials_exist(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert f"amazon-bedrock/{CLAUDE}" in ids
