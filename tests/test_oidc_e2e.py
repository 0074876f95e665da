"""CI jobs' OIDC ID tokens as API keys, through the real server and the openai SDK: tokens signed by a
test issuer on 127.0.0.1 with real RSA and EC keys; every refusal asserted with its status and code,
and no token ever in an error body or a log line."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest

from proxy.config import DiscoveryConfig, ServerConfig
from proxy.gateway.oidc_config import OidcConfig
from tests.conftest import Proxy, models_json
from tests.fakes.oidc_issuer import FakeIssuer, b64url
from tests.fakes.openai_upstream import FakeOpenAI

MASTER = "sk-sb-master-0123456789abcdef0123"
PRICES = {"input": 2.0, "output": 8.0}
MAIN = "oidc:ci:acme/app@refs/heads/main"
DEFAULT_RULES: list[dict[str, Any]] = [
    {"match": {"repository_id": "1001", "ref": "refs/heads/main"}, "models": ["local/m"], "rpm": 100},
    {"match": {"repository": "acme/app", "ref": "refs/heads/release/*"}, "rpm": 100},
    {"match": {"repository": "acme/limited"}, "rpm": 2},
    {"match": {"repository": "acme/broke"}, "budget": 0, "period": "day"},
]


@pytest.fixture
def issuer() -> Iterator[FakeIssuer]:
    fake = FakeIssuer()
    fake.add_key("rsa-1", "RSA")
    fake.add_key("ec-1", "EC")
    fake.start()
    yield fake
    fake.stop()


def oidc_config(issuer: FakeIssuer, rules: list[dict[str, Any]] | None = None, leeway: float = 60) -> OidcConfig:
    entry = {
        "name": "ci",
        "issuer": issuer.issuer,
        "audience": "switchboard",
        "identity": "{repository}@{ref}",
        "rules": rules or DEFAULT_RULES,
    }
    return msgspec.convert({"issuers": [entry], "leeway": leeway}, OidcConfig)


@pytest.fixture
def start_gateway(
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_openai: FakeOpenAI,
    start_proxy: Callable[..., Proxy],
    issuer: FakeIssuer,
) -> Callable[..., Proxy]:
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    models_json(
        isolated_env,
        {
            "local": {
                "baseUrl": fake_openai.url + "/v1",
                "api": "openai-completions",
                "apiKey": "upstream-secret",
                "models": [{"id": "m", "cost": PRICES}, {"id": "other", "cost": PRICES}],
            }
        },
    )

    def start(oidc: OidcConfig | None = None) -> Proxy:
        return start_proxy(config=ServerConfig(discovery=DiscoveryConfig(enabled=False), oidc=oidc))

    return start


@pytest.fixture
def gateway(start_gateway: Callable[..., Proxy], issuer: FakeIssuer) -> Proxy:
    return start_gateway(oidc_config(issuer))


def sdk(proxy: Proxy, key: str) -> openai.OpenAI:
    client = openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0)
    proxy._clients.append(client)
    return client


def ask(proxy: Proxy, token: str, model: str = "local/m") -> Any:
    return sdk(proxy, token).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def refused(proxy: Proxy, token: str, status: int, code: str, model: str = "local/m") -> str:
    """The refusal's message, after checking its status, code and that the token is nowhere in it."""
    with pytest.raises(openai.APIStatusError) as err:
        ask(proxy, token, model)
    assert err.value.status_code == status, err.value.response.text
    assert err.value.code == code, err.value.response.text
    assert token not in err.value.response.text
    assert_not_logged(proxy, token)
    return str(err.value.message)


def assert_not_logged(proxy: Proxy, token: str) -> None:
    for record in proxy.logs:
        line = record.getMessage() + (str(record.exc_info) if record.exc_info else "")
        assert token not in line and token[-40:] not in line, line


def admin(proxy: Proxy) -> httpx.Client:
    client = httpx.Client(base_url=proxy.url + "/admin/v1", headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)
    proxy._clients.append(client)
    return client


def wait_records(proxy: Proxy, key_id: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        r = admin(proxy).get("/requests", params={"key": key_id, "limit": 100})
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["data"]
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_github_token_works_and_its_usage_is_recorded_under_its_identity(
    gateway: Proxy, issuer: FakeIssuer, fake_openai: FakeOpenAI
) -> None:
    rsa_token = issuer.token("rsa-1")
    ec_token = issuer.token("ec-1")
    assert ask(gateway, rsa_token).choices[0].message.content
    assert ask(gateway, ec_token).choices[0].message.content
    assert ask(gateway, rsa_token).choices  # the second use answers from the verified-token cache
    sent = fake_openai.requests[-1].headers
    assert sent["Authorization"] == "Bearer upstream-secret"
    assert rsa_token not in str(fake_openai.requests)

    found = wait_records(gateway, MAIN, 3)
    assert len(found) == 3 and {r["key_id"] for r in found} == {MAIN}
    assert all(r["cost"] > 0 and r["status"] == 200 for r in found)
    by_key = admin(gateway).get("/usage", params={"group_by": "key", "since": "1d"}).json()["data"]
    row = next(r for r in by_key if r["group"] == MAIN)
    assert row["requests"] == 3
    assert_not_logged(gateway, rsa_token)
    assert_not_logged(gateway, ec_token)


def test_the_rule_allow_list_applies(gateway: Proxy, issuer: FakeIssuer) -> None:
    token = issuer.token()
    message = refused(gateway, token, 403, "model_not_allowed", model="local/other")
    assert "local/m" in message
    assert {m.id for m in sdk(gateway, token).models.list()} == {"local/m"}


def test_expired_and_not_yet_valid_tokens(gateway: Proxy, issuer: FakeIssuer) -> None:
    now = int(time.time())
    expired = issuer.token(iat=now - 900, nbf=now - 900, exp=now - 600)
    message = refused(gateway, expired, 401, "oidc_token_expired")
    assert "expired at" in message
    # Within the leeway (60 s) a token just expired still passes: clocks of runners drift.
    assert ask(gateway, issuer.token(iat=now - 400, nbf=now - 400, exp=now - 10)).choices
    early = issuer.token(nbf=now + 600, iat=now, exp=now + 900)
    assert "not valid yet" in refused(gateway, early, 401, "invalid_oidc_token")
    future_iat = issuer.token(nbf=None, iat=now + 600, exp=now + 900)
    assert "not valid yet" in refused(gateway, future_iat, 401, "invalid_oidc_token")


def test_wrong_audience(gateway: Proxy, issuer: FakeIssuer) -> None:
    message = refused(gateway, issuer.token(aud="sts.amazonaws.com"), 401, "invalid_oidc_token")
    assert "audience=switchboard" in message
    # A list holding the audience is fine.
    assert ask(gateway, issuer.token(aud=["other", "switchboard"])).choices


def test_wrong_issuer(gateway: Proxy, issuer: FakeIssuer) -> None:
    """A token from an untrusted issuer, and one claiming the trusted issuer but signed by a key it does
    not publish."""
    message = refused(gateway, issuer.token(iss="https://evil.example"), 401, "invalid_oidc_token")
    assert "not trusted" in message and issuer.issuer in message
    issuer.add_key("rogue", "RSA", publish=False)
    assert "not among the keys" in refused(gateway, issuer.token("rogue"), 401, "invalid_oidc_token")
    # Same kid as a published key, but signed by another: the signature does not verify.
    forged = issuer.token("rogue").split(".")
    real_header = issuer.token("rsa-1").split(".")[0]
    swapped = ".".join([real_header, forged[1], forged[2]])
    assert "signature" in refused(gateway, swapped, 401, "invalid_oidc_token")


def test_a_repository_no_rule_admits_is_403_naming_the_claims(gateway: Proxy, issuer: FakeIssuer) -> None:
    token = issuer.token(repository="acme/other", repository_id="9999")
    message = refused(gateway, token, 403, "oidc_no_matching_rule")
    assert "repository_id='9999'" in message and "repository='acme/other'" in message
    assert "ref='refs/heads/main'" in message and "oidc.issuers[0].rules" in message
    # The right repository on a branch no rule names is refused too.
    assert "ref='refs/heads/dev'" in refused(gateway, issuer.token(ref="refs/heads/dev"), 403, "oidc_no_matching_rule")


def test_glob_on_ref(gateway: Proxy, issuer: FakeIssuer) -> None:
    assert ask(gateway, issuer.token(ref="refs/heads/release/1.2")).choices
    assert wait_records(gateway, "oidc:ci:acme/app@refs/heads/release/1.2", 1)
    refused(gateway, issuer.token(ref="refs/tags/release/1.2"), 403, "oidc_no_matching_rule")


def test_alg_none_is_refused(gateway: Proxy, issuer: FakeIssuer) -> None:
    claims = issuer.claims()
    for alg in ("none", "None", "NONE"):
        token = issuer.forge({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, claims, None)
        assert "only RS256 and ES256" in refused(gateway, token, 401, "invalid_oidc_token")


def test_hmac_signed_with_the_public_key_is_refused(gateway: Proxy, issuer: FakeIssuer) -> None:
    """The "HMAC with the public key" attack: HS256 over the issuer's public key as PEM or JWK bytes,
    and over a symmetric key the issuer's JWKS really lists."""
    claims = issuer.claims()
    secrets = [issuer.public_pem("rsa-1"), msgspec.json.encode(issuer.jwk("rsa-1")), issuer.public_pem("ec-1")]
    for secret in secrets:
        for alg in ("HS256", "HS384", "HS512"):
            token = issuer.forge({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, claims, secret)
            assert "only RS256 and ES256" in refused(gateway, token, 401, "invalid_oidc_token")


def test_a_symmetric_key_in_the_jwks_verifies_nothing(start_gateway: Callable[..., Proxy], issuer: FakeIssuer) -> None:
    shared = b"published-by-mistake"
    issuer.extra_jwks.append({"kty": "oct", "kid": "hmac", "k": b64url(shared)})
    issuer.extra_jwks.append({"kty": "oct", "kid": "hmac2", "alg": "HS256", "k": b64url(b"secret")})
    proxy = start_gateway(oidc_config(issuer))
    for kid, secret in (("hmac", shared), ("hmac2", b"secret")):
        token = issuer.forge({"alg": "HS256", "kid": kid}, issuer.claims(), secret)
        refused(proxy, token, 401, "invalid_oidc_token")
        # The same kid with RS256 claimed: no RSA key has that kid.
        spoof = issuer.forge({"alg": "RS256", "kid": kid}, issuer.claims(), secret)
        refused(proxy, spoof, 401, "invalid_oidc_token")
    assert ask(proxy, issuer.token("rsa-1")).choices


def test_rule_limits_are_per_identity_and_shared_by_its_tokens(gateway: Proxy, issuer: FakeIssuer) -> None:
    """rpm 2 for acme/limited: two different tokens of the same repository and ref share the bucket;
    another ref is another identity with its own."""
    first = issuer.token(repository="acme/limited", repository_id="2002")
    second = issuer.token("ec-1", repository="acme/limited", repository_id="2002")
    assert first != second
    assert ask(gateway, first).choices
    assert ask(gateway, second).choices
    message = refused(gateway, first, 429, "rate_limit_exceeded")
    assert "oidc:ci:acme/limited@refs/heads/main" in message and "2 requests per minute" in message
    refused(gateway, issuer.token(repository="acme/limited", repository_id="2002"), 429, "rate_limit_exceeded")
    assert ask(gateway, issuer.token(repository="acme/limited", repository_id="2002", ref="refs/heads/other")).choices


def test_a_rule_budget_is_enforced(gateway: Proxy, issuer: FakeIssuer) -> None:
    message = refused(gateway, issuer.token(repository="acme/broke", repository_id="3003"), 429, "budget_exceeded")
    assert "oidc:ci:acme/broke@refs/heads/main" in message


def test_identity_template_and_long_identities(start_gateway: Callable[..., Proxy], issuer: FakeIssuer) -> None:
    """Without a template a non-GitHub issuer's identity is the subject; an identity too long for the
    ledger's key column keeps a readable prefix and a digest."""
    rules: list[dict[str, Any]] = [{"match": {"repository_owner_id": "42"}}]
    proxy = start_gateway(msgspec.convert({"issuers": [{**_entry(issuer), "rules": rules}]}, OidcConfig))
    assert ask(proxy, issuer.token(sub="project_path:acme/app:ref_type:branch:ref:main")).choices
    assert wait_records(proxy, "oidc:ci:project_path:acme/app:ref_type:branch:ref:main", 1)
    long_sub = "repo:acme/" + "x" * 100 + ":ref:refs/heads/{weird}"
    assert ask(proxy, issuer.token(sub=long_sub)).choices
    groups = [r["group"] for r in admin(proxy).get("/usage", params={"group_by": "key", "since": "1d"}).json()["data"]]
    deadline = time.monotonic() + 10
    while not any(g.startswith("oidc:ci:repo:acme/xxx") for g in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = [r["group"] for r in admin(proxy).get("/usage", params={"group_by": "key"}).json()["data"]]
    long_id = next(g for g in groups if g.startswith("oidc:ci:repo:acme/xxx"))
    assert len(long_id) <= 64 and "{" not in long_id and "#" in long_id


def _entry(issuer: FakeIssuer) -> dict[str, Any]:
    return {"name": "ci", "issuer": issuer.issuer, "audience": "switchboard"}


def test_virtual_keys_and_the_master_key_still_work_beside_oidc(gateway: Proxy, issuer: FakeIssuer) -> None:
    created = admin(gateway).post("/keys", json={"name": "plain"})
    assert created.status_code == 201, created.text
    assert ask(gateway, created.json()["key"]).choices
    assert ask(gateway, MASTER).choices
    garbage = "eyJhbGciOiJSUzI1NiJ9.eyJub3QiOiJqc29uIn0.c2ln"
    refused(gateway, garbage, 401, "invalid_oidc_token")
    refused(gateway, "eyJ" + "a" * 40 + ".b.c", 401, "invalid_oidc_token")


def test_without_oidc_a_jwt_is_told_the_gateway_trusts_no_issuer(
    start_gateway: Callable[..., Proxy], issuer: FakeIssuer
) -> None:
    proxy = start_gateway(None)
    assert "trusts no OIDC issuer" in refused(proxy, issuer.token(), 401, "invalid_api_key")


def test_a_cached_token_is_refused_once_it_expires(start_gateway: Callable[..., Proxy], issuer: FakeIssuer) -> None:
    proxy = start_gateway(oidc_config(issuer, leeway=0))
    token = issuer.token(exp=int(time.time()) + 2)
    assert ask(proxy, token).choices
    assert ask(proxy, token).choices  # from the verified-token cache
    deadline = time.monotonic() + 10
    while True:
        try:
            ask(proxy, token)
        except openai.AuthenticationError as exc:
            assert exc.code == "oidc_token_expired"
            break
        assert time.monotonic() < deadline, "the cached token was never refused"
        time.sleep(0.05)
