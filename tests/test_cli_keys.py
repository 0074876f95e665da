"""``switchboard keys`` / ``switchboard usage``: on the local store (SQLite, PostgreSQL), announcing changes
through Redis to a running gateway, and on a running gateway's admin API (``--url``)."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import proxy.cli
from proxy.config import GatewayConfig, ServerConfig
from proxy.gateway.contract import UsageRecord, hash_key
from proxy.gateway.store import SqlStore, database_url
from tests.conftest import Proxy, local_provider
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_gateway_service import _pg_database, _pg_drop

MASTER = "sk-sb-master-cli-tests-0123456789abcdef"
REDIS_URL = "redis://127.0.0.1:6379/0"


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = _main(list(argv))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def _main(argv: list[str]) -> int:
    return proxy.cli.main(argv)


def _store_call(url: str, op: Callable[[SqlStore], Any]) -> Any:
    async def go() -> Any:
        store = SqlStore(url)
        await store.start()
        try:
            return await op(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _record(key_id: str | None, model: str, cost: float, **kw: Any) -> UsageRecord:
    return UsageRecord(
        ts=time.time() - 5,
        request_id="req_" + secrets.token_hex(4),
        key_id=key_id,
        surface="chat",
        provider="openai",
        model=model,
        status=200,
        stream=False,
        cost=cost,
        **kw,
    )


def _lifecycle(cli: Callable[..., Run], url: str) -> None:
    """Every command once on the local store at ``url``."""
    made = cli(
        "keys",
        "create",
        "ci",
        "--models",
        "openai/*",
        "local/m",
        "--budget",
        "5",
        "--period",
        "week",
        "--rpm",
        "10",
        "--tpm",
        "2000",
        "--parallel",
        "2",
        "--expires",
        "2h",
        "--metadata",
        '{"team": "ml"}',
    )
    assert made.code == 0, made.err
    key = made.out.strip()
    assert made.out == key + "\n" and key.startswith("sk-sb-")
    assert "will not be shown again" in made.err and key not in made.err
    stored = _store_call(url, lambda s: s.find_key(hash_key(key)))
    assert stored is not None and stored.name == "ci" and stored.models == ["openai/*", "local/m"]
    assert (stored.budget, stored.period, stored.rpm, stored.tpm, stored.parallel) == (5, "week", 10, 2000, 2)
    assert stored.metadata == {"team": "ml"} and stored.expires_at == pytest.approx(time.time() + 7200, abs=60)
    key_id = stored.id

    listing = cli("keys", "list", "--json")
    assert listing.code == 0
    [view] = listing.json()["data"]
    assert view["id"] == key_id and view["key_prefix"] == key[:10] + "…" and view["budget"] == 5
    assert key not in listing.out and stored.key_hash not in listing.out and "key_hash" not in listing.out
    table = cli("keys", "list")
    assert key_id in table.out and key[:10] + "…" in table.out and "$5/week" in table.out and "active" in table.out
    assert key not in table.out

    shown = cli("keys", "show", key_id)
    assert shown.code == 0 and "openai/*, local/m" in shown.out and '{"team": "ml"}' in shown.out
    assert key not in shown.out and stored.key_hash not in shown.out

    updated = cli("keys", "update", key_id, "--rpm", "7", "--no-budget", "--all-models", "--name", "ci2", "--json")
    assert updated.code == 0, updated.err
    v = updated.json()
    assert (v["rpm"], v["budget"], v["period"], v["models"], v["name"]) == (7, None, None, [], "ci2")
    bad = cli("keys", "update", key_id, "--rpm", "3", "--no-rpm")
    assert bad.code == 2 and "contradict" in bad.err
    assert cli("keys", "update", key_id).code == 2
    assert cli("keys", "update", key_id, "--rpm", "0").code == 2

    assert cli("keys", "disable", key_id, "--json").json()["disabled"] is True
    assert "disabled" in cli("keys", "show", key_id).out
    assert cli("keys", "enable", key_id, "--json").json()["disabled"] is False

    rotated = cli("keys", "rotate", key_id)
    new = rotated.out.strip()
    assert rotated.code == 0 and new.startswith("sk-sb-") and new != key and "will not be shown again" in rotated.err
    assert _store_call(url, lambda s: s.find_key(hash_key(key))) is None
    assert _store_call(url, lambda s: s.find_key(hash_key(new))).id == key_id

    _store_call(
        url,
        lambda s: s.add_usage(
            [
                _record(key_id, "gpt-a", 0.25, input_tokens=100, output_tokens=20, cached_tokens=30),
                _record(key_id, "gpt-b", 0.5, reasoning_tokens=7, cache_write_tokens=9),
            ]
        ),
    )
    usage = cli("usage")
    assert usage.code == 0, usage.err
    lines = usage.out.splitlines()
    assert lines[1].split()[:2] == ["GROUP", "REQUESTS"]
    row = next(line for line in lines if line.startswith(key_id)).split()
    assert row == [key_id, "2", "100", "20", "30", "9", "7", "0.750000"]
    assert lines[-1].split()[0] == "TOTAL"
    by_model = cli("usage", "--by", "model", "--since", "7d", "--key", key_id, "--json").json()
    assert by_model["group_by"] == "model" and {r["group"]: r["requests"] for r in by_model["data"]} == {
        "openai/gpt-a": 1,
        "openai/gpt-b": 1,
    }
    assert cli("usage", "--since", "soon").code == 2

    deleted = cli("keys", "delete", key_id)
    assert deleted.code == 0 and key_id in deleted.out
    missing = cli("keys", "show", key_id)
    assert missing.code == 2 and "no key with id" in missing.err
    assert cli("keys", "list", "--json").json()["data"] == []


def test_local_sqlite(cli: Callable[..., Run], isolated_env: Path) -> None:
    _lifecycle(cli, database_url(None, isolated_env))
    assert (isolated_env / "switchboard.db").exists()


def test_local_postgres(cli: Callable[..., Run], isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = asyncio.run(_pg_database())
    if name is None:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (CI starts it; .ci/run installs it)")
    try:
        raw = f"postgresql://postgres@127.0.0.1:5432/{name}"
        monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", raw)
        _lifecycle(cli, database_url(raw, isolated_env))
        assert not (isolated_env / "switchboard.db").exists()
    finally:
        asyncio.run(_pg_drop(name))


def test_local_input_errors(cli: Callable[..., Run]) -> None:
    bad = cli("keys", "create", "--metadata", "[1]")
    assert bad.code == 2 and "--metadata must be a JSON object" in bad.err
    past = cli("keys", "create", "--expires", "2001-01-01")
    assert past.code == 2 and "expires" in past.err
    assert cli("keys", "create", "--period", "day").code == 2
    assert cli("keys", "list", "--json").json()["data"] == []
    assert "No keys yet" in cli("keys", "list").err


# -- against a running gateway --------------------------------------------------------------------------------


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def gateway(
    start_proxy: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch, isolated_env: Path, fake_openai: FakeOpenAI
) -> Iterator[Callable[..., Proxy]]:
    local_provider(isolated_env, fake_openai)
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)

    def start(**config: Any) -> Proxy:
        base = ServerConfig(discovery=ServerConfig().discovery.__class__(enabled=False))
        return start_proxy(config=ServerConfig(**{**{f: getattr(base, f) for f in base.__struct_fields__}, **config}))

    yield start


def _status(p: Proxy, key: str) -> int:
    return p.http().get("/v1/models", headers={"authorization": f"Bearer {key}"}).status_code


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_local_changes_reach_a_running_gateway_through_redis(
    cli: Callable[..., Run], gateway: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _redis_up():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (CI starts it; .ci/run installs it)")
    monkeypatch.setenv("SWITCHBOARD_REDIS_URL", REDIS_URL)
    # Keys are reloaded hourly here: only the Redis message can make the change visible sooner.
    p = gateway(redis_url=REDIS_URL, gateway=GatewayConfig(key_refresh=3600))
    key = cli("keys", "create", "r").out.strip()
    assert _status(p, key) == 200
    key_id = cli("keys", "list", "--json").json()["data"][0]["id"]
    new = cli("keys", "rotate", key_id).out.strip()
    _until(lambda: _status(p, key) == 401, "the rotated key was still accepted")
    assert _status(p, new) == 200
    assert cli("keys", "disable", key_id).code == 0
    _until(lambda: _status(p, new) == 401, "the disabled key was still accepted")


def test_remote_mode(cli: Callable[..., Run], gateway: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch) -> None:
    p = gateway()
    monkeypatch.setenv("SWITCHBOARD_URL", p.url)
    made = cli("keys", "create", "remote", "--models", "local/*", "--budget", "1", "--rpm", "50", "--json")
    assert made.code == 0, made.err
    created = made.json()
    key, key_id = created["key"], created["id"]
    assert _status(p, key) == 200
    listing = cli("keys", "list", "--json").json()["data"]
    assert [v["id"] for v in listing] == [key_id] and key not in json.dumps(listing)
    assert "remote" in cli("keys", "show", key_id).out
    assert cli("keys", "update", key_id, "--tpm", "900000", "--json").json()["tpm"] == 900_000
    assert cli("keys", "disable", key_id).code == 0
    assert _status(p, key) == 401
    assert cli("keys", "enable", key_id).code == 0
    new = cli("keys", "rotate", key_id).out.strip()
    assert new.startswith("sk-sb-") and _status(p, key) == 401 and _status(p, new) == 200

    chat = p.http().post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {new}"},
        json={"model": "local/m", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert chat.status_code == 200, chat.text
    usage = cli("usage", "--json").json()
    assert [(r["group"], r["requests"]) for r in usage["data"]] == [(key_id, 1)]
    assert key_id in cli("usage", "--by", "key").out

    missing = cli("keys", "show", "key_nope")
    assert missing.code == 2 and "no key with id" in missing.err
    assert cli("keys", "delete", key_id).code == 0
    assert _status(p, new) == 401

    # --url wins over the environment.
    monkeypatch.setenv("SWITCHBOARD_URL", "http://127.0.0.1:9")
    assert cli("keys", "list", "--url", p.url, "--json").json()["data"] == []


def test_remote_mode_errors(
    cli: Callable[..., Run], gateway: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = gateway()
    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", "sk-sb-master-wrong-0000000000000")
    wrong = cli("keys", "list", "--url", p.url)
    assert wrong.code == 2 and "refused the master key" in wrong.err and "SWITCHBOARD_MASTER_KEY" in wrong.err
    assert "wrong" not in wrong.err

    monkeypatch.delenv("SWITCHBOARD_MASTER_KEY")
    unset = cli("keys", "list", "--url", p.url)
    assert unset.code == 2 and "set SWITCHBOARD_MASTER_KEY" in unset.err

    monkeypatch.setenv("SWITCHBOARD_MASTER_KEY", MASTER)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    down = cli("usage", "--url", closed)
    assert down.code == 2 and "cannot reach the gateway" in down.err and closed in down.err
    assert MASTER not in down.err + wrong.err + unset.err

    not_gateway = cli("keys", "list", "--url", p.url + "/v1")
    assert not_gateway.code == 2 and not_gateway.out == ""
