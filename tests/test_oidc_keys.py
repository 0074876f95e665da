"""The issuer's signing keys as the gateway fetches them (warm at start, once per rotation, one fetch
for a burst, rate-limited for invented kids, redirects refused) and the ``oidc`` config's refusals at
start; OIDC identities in PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from proxy.config import DiscoveryConfig, ServerConfig
from proxy.gateway.oidc_config import OidcConfig
from tests import test_oidc_e2e as e2e
from tests.conftest import Proxy, write_json
from tests.fakes.oidc_issuer import FakeIssuer
from tests.fakes.server import Action, free_port
from tests.test_gateway_store import create_pg_database
from tests.test_oidc_e2e import MASTER, ask, oidc_config, refused

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"

# The fixtures of the end-to-end tests: an issuer with keys rsa-1 and ec-1, a gateway started with a config.
issuer = e2e.issuer
start_gateway = e2e.start_gateway
gateway = e2e.gateway


def health(proxy: Proxy) -> dict[str, Any]:
    data: dict[str, Any] = proxy.http().get("/healthz").json()
    return data


def test_the_keys_are_fetched_at_start_and_again_once_per_rotation(gateway: Proxy, issuer: FakeIssuer) -> None:
    assert issuer.jwks_fetches == 1  # the start waited for them
    assert ask(gateway, issuer.token("rsa-1")).choices
    assert issuer.jwks_fetches == 1
    issuer.add_key("rsa-2", "RSA")  # the issuer rotates: the new key is published next to the old ones
    assert ask(gateway, issuer.token("rsa-2")).choices
    assert issuer.jwks_fetches == 2
    assert ask(gateway, issuer.token("rsa-2")).choices
    assert ask(gateway, issuer.token("rsa-1")).choices
    assert issuer.jwks_fetches == 2
    assert health(gateway)["status"] == "ok"


async def test_a_burst_of_tokens_with_a_new_kid_costs_one_fetch(gateway: Proxy, issuer: FakeIssuer) -> None:
    issuer.add_key("ec-2", "EC")
    issuer.jwks_delay = 0.3  # the burst arrives while the fetch is under way
    before = issuer.jwks_fetches
    tokens = [issuer.token("ec-2") for _ in range(12)]
    body = {"model": "local/m", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        answers = await asyncio.gather(
            *(http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {t}"}) for t in tokens)
        )
    assert [a.status_code for a in answers] == [200] * len(tokens), answers[0].text
    assert issuer.jwks_fetches == before + 1


def test_invented_kids_refetch_at_most_once_a_minute(gateway: Proxy, issuer: FakeIssuer) -> None:
    issuer.add_key("rogue-1", "RSA", publish=False)
    issuer.add_key("rogue-2", "RSA", publish=False)
    refused(gateway, issuer.token("rogue-1"), 401, "invalid_oidc_token")
    assert issuer.jwks_fetches == 2  # the start's, and one for the unknown kid
    for kid in ("rogue-2", "rogue-1", "rogue-2"):
        message = refused(gateway, issuer.token(kid), 401, "invalid_oidc_token")
        assert "fetched again for an unknown key in" in message
    assert issuer.jwks_fetches == 2
    # The price of the cap: a rotation right after a refetch waits for the next one (at most a minute).
    issuer.add_key("rsa-2", "RSA")
    refused(gateway, issuer.token("rsa-2"), 401, "invalid_oidc_token")
    assert issuer.jwks_fetches == 2
    assert ask(gateway, issuer.token("rsa-1")).choices


def test_an_unreachable_issuer_does_not_stop_the_start(start_gateway: Callable[..., Proxy], issuer: FakeIssuer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = msgspec.convert(
        {"issuers": [{"name": "gone", "issuer": dead, "audience": "switchboard", "rules": [{"match": {"sub": "*"}}]}]},
        OidcConfig,
    )
    proxy = start_gateway(config)
    state = health(proxy)
    assert state["status"] == "degraded"
    assert any("oidc" in p and "cannot be fetched" in p for p in state["problems"]), state
    refused(proxy, issuer.token(iss=dead), 401, "invalid_oidc_token")


def test_redirects_are_not_followed(start_gateway: Callable[..., Proxy], issuer: FakeIssuer) -> None:
    issuer.push(Action("error", status=302, headers={"Location": "https://elsewhere.example/jwks"}))
    proxy = start_gateway(oidc_config(issuer))
    problems = health(proxy)["problems"]
    assert any("redirects are not followed" in p for p in problems), problems
    assert issuer.jwks_fetches == 0
    # The next fetch (for the token's kid, unknown since nothing was fetched) finds the keys.
    assert ask(proxy, issuer.token("rsa-1")).choices
    assert issuer.jwks_fetches == 1
    assert health(proxy)["status"] == "ok"


# --- config.json refusals at start, through `switchboard serve` -------------------------------------------


def _serve_refused(isolated_env: Path, tmp_path: Path, config: dict[str, Any], master: bool = True) -> str:
    write_json(isolated_env / "config.json", {"discovery": {"enabled": False}, **config})
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SWITCHBOARD_HOME": str(isolated_env),
        **({"SWITCHBOARD_MASTER_KEY": MASTER} if master else {}),
    }
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert out.returncode != 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    return out.stderr


def _issuer_entry(**changes: Any) -> dict[str, Any]:
    entry = {
        "name": "github",
        "issuer": "https://token.actions.githubusercontent.com",
        "audience": "switchboard",
        "rules": [{"match": {"repository_id": "1001"}, "rpm": 30}],
    }
    return {**entry, **changes}


def test_a_rule_without_a_condition_refuses_the_start(isolated_env: Path, tmp_path: Path) -> None:
    rules = [{"match": {"repository_id": "1001"}}, {"models": ["anthropic/*"], "rpm": 30}]
    err = _serve_refused(isolated_env, tmp_path, {"oidc": {"issuers": [_issuer_entry(rules=rules)]}})
    assert "config.oidc.issuers[0].rules[1]" in err and "match names no claim" in err
    err = _serve_refused(isolated_env, tmp_path, {"oidc": {"issuers": [_issuer_entry(rules=[{"match": {}}])]}})
    assert "config.oidc.issuers[0].rules[0]" in err


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"issuer": "http://token.example.com"}, "must be an https:// URL"),
        ({"rules": [{"match": {"ref": "refs/heads/*"}, "rpm": 0}]}, "invalid rpm"),
        ({"rules": [{"match": {"ref": "x"}, "period": "day"}]}, "period applies to a budget"),
        ({"identity": "{repository!r}"}, "not a plain {claim} placeholder"),
        ({"audiences": ["x"]}, "audiences"),
    ],
)
def test_config_mistakes_name_their_key_path(
    isolated_env: Path, tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    err = _serve_refused(isolated_env, tmp_path, {"oidc": {"issuers": [_issuer_entry(**changes)]}})
    assert expected in err and "config.oidc.issuers[0]" in err, err


def test_oidc_without_the_gateway_refuses_the_start(isolated_env: Path, tmp_path: Path) -> None:
    err = _serve_refused(isolated_env, tmp_path, {"oidc": {"issuers": [_issuer_entry()]}}, master=False)
    assert "oidc" in err and "master key" in err, err


# --- PostgreSQL (key_id column of 64 characters) and Redis (limits shared by replicas) ---------------------


def _reachable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def database() -> Iterator[str]:
    if not (_reachable(5432) and _reachable(6379)):
        pytest.skip("needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (scripts/services starts them)")
    for name in create_pg_database("sb_oidc"):
        yield f"{PG}/{name}"


def test_identities_in_postgres_and_redis(
    database: str, start_gateway: Callable[..., Proxy], issuer: FakeIssuer, start_proxy: Callable[..., Proxy]
) -> None:
    """A long identity fits the ledger's key column; rpm is counted in Redis, so two replicas (two apps on
    one database and one Redis) share an identity's bucket."""
    repo = "acme/" + secrets.token_hex(4) + "-" + "y" * 80  # fresh in Redis, longer than the key_id column
    rules: list[dict[str, Any]] = [{"match": {"repository": repo}, "rpm": 3}]
    config = ServerConfig(
        discovery=DiscoveryConfig(enabled=False),
        oidc=oidc_config(issuer, rules),
        database_url=database,
        redis_url=REDIS,
    )
    start_gateway()  # writes models.json and sets the master key; its own app is not used here
    first, second = start_proxy(config=config), start_proxy(config=config)
    for proxy in (first, second, first):
        assert ask(proxy, issuer.token(repository=repo)).choices
    message = refused(second, issuer.token(repository=repo), 429, "rate_limit_exceeded")
    assert repo in message
    http = httpx.Client(base_url=first.url + "/admin/v1", headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)
    first._clients.append(http)
    deadline = time.monotonic() + 10
    while True:
        rows = http.get("/usage", params={"group_by": "key", "since": "1d"}).json()["data"]
        mine = [r for r in rows if r["group"].startswith("oidc:ci:acme/")]
        if (mine and mine[0]["requests"] >= 3) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(mine) == 1 and mine[0]["requests"] == 3, json.dumps(rows)
    assert len(mine[0]["group"]) <= 64
