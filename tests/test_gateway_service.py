"""KeyService on real stores: SQLite in a tmp dir, and PostgreSQL (a database of its own per test)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from providers.errors import InvalidRequest, NotFound
from proxy.gateway.bus import LocalBus
from proxy.gateway.contract import KeyRecord, UsageRecord, hash_key
from proxy.gateway.limits import LocalLimiter
from proxy.gateway.periods import iso, period_bounds
from proxy.gateway.service import KeyService, KeySpec, decode_spec
from proxy.gateway.store import SqlStore, database_url
from proxy.gateway.timeparse import parse_expires, parse_since

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def _pg_database() -> str | None:
    """A new empty database's name, or None when PostgreSQL is not reachable."""
    try:
        import asyncpg
    except ImportError:
        return None
    name = "sb_svc_" + secrets.token_hex(6)
    try:
        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _pg_drop(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=3)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    pg_name: str | None = None
    if request.param == "sqlite":
        url = database_url(None, tmp_path)
    else:
        pg_name = await _pg_database()
        if pg_name is None:
            pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (CI starts it; .ci/run installs it)")
        url = database_url(f"postgresql://postgres@127.0.0.1:5432/{pg_name}", tmp_path)
    s = SqlStore(url)
    await s.start()
    try:
        yield s
    finally:
        await s.close()
        if pg_name is not None:
            await _pg_drop(pg_name)


class Harness:
    def __init__(self, store: SqlStore, bus: LocalBus, limiter: LocalLimiter | None = None) -> None:
        self.store = store
        self.bus = bus
        self.published: list[str] = []
        bus.subscribe(self.published.append)
        self.service = KeyService(store, bus, limiter)


@pytest.fixture
async def h(store: SqlStore) -> AsyncIterator[Harness]:
    bus = LocalBus()
    await bus.start()
    try:
        yield Harness(store, bus)
    finally:
        await bus.close()


def _spec(**kw: Any) -> KeySpec:
    return decode_spec(kw)


async def _published(h: Harness, key_id: str) -> None:
    """The bus delivers in the event loop: wait (bounded) for the id to arrive."""
    import asyncio

    deadline = time.monotonic() + 5
    while key_id not in h.published:
        assert time.monotonic() < deadline, f"{key_id} was not published; got {h.published}"
        await asyncio.sleep(0.001)


# -- create ------------------------------------------------------------------------------------------------


async def test_create_returns_plaintext_once_and_stores_only_its_hash(h: Harness) -> None:
    record, plaintext = await h.service.create(_spec(name="ci", models=["openai/*"], budget=5, period="day", rpm=10))
    assert plaintext.startswith("sk-sb-") and len(plaintext) >= 6 + 32
    assert record.key_hash == hash_key(plaintext) and plaintext not in record.key_hash
    assert record.key_prefix == plaintext[:10]
    found = await h.store.find_key(hash_key(plaintext))
    assert found is not None and found.id == record.id and found.models == ["openai/*"]
    assert found.budget == 5 and found.period == "day" and found.rpm == 10
    assert plaintext not in msgspec.json.encode(found).decode()
    await _published(h, record.id)


async def test_two_keys_differ(h: Harness) -> None:
    (a, ka), (b, kb) = await h.service.create(_spec()), await h.service.create(_spec())
    assert a.id != b.id and ka != kb and a.key_hash != b.key_hash


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"budget": -1}, "budget", ">= 0"),
        ({"rpm": 0}, "rpm", ">= 1"),
        ({"tpm": "lots"}, "tpm", "int"),
        ({"parallel": 0}, "parallel", ">= 1"),
        ({"period": "year"}, "period", "day"),
        ({"models": "openai/*"}, "models", "array"),
        ({"models": [""]}, "models", "length"),
        ({"metadata": [1]}, "metadata", "object"),
    ],
)
async def test_spec_validation_names_the_field(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_spec(body)
    assert info.value.status == 400 and info.value.param == param
    assert param in info.value.message and words in info.value.message


async def test_unknown_fields_are_all_named() -> None:
    with pytest.raises(InvalidRequest) as info:
        decode_spec({"name": "x", "budgett": 1, "rmp": 2})
    assert "'budgett'" in info.value.message and "'rmp'" in info.value.message
    assert "allowed:" in info.value.message
    with pytest.raises(InvalidRequest, match="JSON object"):
        decode_spec([1, 2])


async def test_period_needs_a_budget(h: Harness) -> None:
    with pytest.raises(InvalidRequest) as info:
        await h.service.create(_spec(period="day"))
    assert info.value.param == "period"


@pytest.mark.parametrize(
    ("expires", "expected"),
    [
        ("30m", 1_800_000_000 + 1800),
        ("2h", 1_800_000_000 + 7200),
        ("7d", 1_800_000_000 + 7 * 86400),
        ("2030-01-02", datetime(2030, 1, 2, tzinfo=UTC).timestamp()),
        ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()),
        ("2030-01-02T03:04:05+02:00", datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC).timestamp()),
        (1_900_000_000, 1_900_000_000.0),
        ("1900000000", 1_900_000_000.0),
    ],
)
async def test_expires_forms(h: Harness, expires: str | float, expected: float) -> None:
    record, _ = await h.service.create(_spec(expires=expires), now=1_800_000_000)
    assert record.expires_at == pytest.approx(expected)


@pytest.mark.parametrize("expires", ["yesterday", "2h30", "2020-01-01", "nan", "-5m", 100])
async def test_bad_or_past_expiry_is_refused(h: Harness, expires: str | float) -> None:
    with pytest.raises(InvalidRequest) as info:
        await h.service.create(_spec(expires=expires), now=1_800_000_000)
    assert info.value.param == "expires" and info.value.status == 400
    assert await h.store.list_keys() == []


def test_since_forms() -> None:
    now = 1_800_000_000.0
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("24h", now) == now - 86400
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    assert parse_since("2026-11-01T12:00:00Z", now) == datetime(2026, 11, 1, 12, tzinfo=UTC).timestamp()
    with pytest.raises(InvalidRequest) as info:
        parse_since("last week", now)
    assert info.value.param == "since"
    assert parse_expires("1h", now) == now + 3600


# -- view, list, get ------------------------------------------------------------------------------------


async def test_view_shows_everything_but_the_hash(h: Harness) -> None:
    now = time.time()
    record, plaintext = await h.service.create(
        _spec(
            name="team",
            models=["a/*"],
            budget=2.5,
            period="month",
            rpm=1,
            tpm=2,
            parallel=3,
            expires="1d",
            metadata={"team": "ml"},
        ),
        now=now,
    )
    [view] = await h.service.views(await h.service.list(), now)
    assert view["id"] == record.id and view["name"] == "team"
    assert view["key_prefix"] == plaintext[:10] + "…"
    assert view["models"] == ["a/*"] and view["budget"] == 2.5 and view["period"] == "month"
    assert (view["rpm"], view["tpm"], view["parallel"]) == (1, 2, 3)
    assert view["budget_resets_at"] == iso(period_bounds("month", now)[1])
    assert view["expires_at"] == iso(now + 86400) and view["expired"] is False
    assert view["disabled"] is False and view["metadata"] == {"team": "ml"}
    assert view["created_at"] == iso(now) and view["last_used_at"] is None
    assert view["spend"] == 0
    text = json.dumps(view)
    assert "key_hash" not in text and record.key_hash not in text and plaintext not in text
    assert await h.service.get(record.id) == record


async def test_lifetime_budget_has_no_reset(h: Harness) -> None:
    record, _ = await h.service.create(_spec(budget=1))
    [view] = await h.service.views([record])
    assert view["budget_resets_at"] is None and view["period"] is None


async def test_get_unknown_is_404(h: Harness) -> None:
    with pytest.raises(NotFound) as info:
        await h.service.get("key_nope")
    assert info.value.status == 404 and info.value.code == "key_not_found"


# -- update, rotate, delete ------------------------------------------------------------------------------


async def test_update_sets_fields_and_publishes(h: Harness) -> None:
    record, _ = await h.service.create(_spec(name="a", budget=1, period="day", rpm=5))
    h.published.clear()
    updated = await h.service.update(record.id, {"name": "b", "rpm": None, "tpm": 100, "models": ["x/y"]})
    assert (updated.name, updated.rpm, updated.tpm, updated.models) == ("b", None, 100, ["x/y"])
    assert updated.budget == 1 and updated.key_hash == record.key_hash
    await _published(h, record.id)
    disabled = await h.service.update(record.id, {"disabled": True})
    assert disabled.disabled is True
    assert (await h.store.get_key(record.id)).disabled is True  # type: ignore[union-attr]
    cleared = await h.service.update(record.id, {"budget": None})
    assert cleared.budget is None and cleared.period is None


async def test_update_expiry_and_refusals(h: Harness) -> None:
    record, _ = await h.service.create(_spec())
    updated = await h.service.update(record.id, {"expires": "2h"}, now=2_000_000_000)
    assert updated.expires_at == 2_000_007_200
    assert (await h.service.update(record.id, {"expires": None})).expires_at is None
    with pytest.raises(InvalidRequest) as info:
        await h.service.update(record.id, {"rpm": 1, "key_hash": "x", "id": "y"})
    assert "'id'" in info.value.message and "'key_hash'" in info.value.message
    with pytest.raises(InvalidRequest, match="nothing to change"):
        await h.service.update(record.id, {})
    with pytest.raises(InvalidRequest) as info:
        await h.service.update(record.id, {"period": "week"})
    assert info.value.param == "period"
    with pytest.raises(InvalidRequest) as info:
        await h.service.update(record.id, {"disabled": "yes"})
    assert info.value.param == "disabled"
    with pytest.raises(NotFound):
        await h.service.update("key_nope", {"rpm": 1})
    assert (await h.service.get(record.id)).rpm is None


async def test_rotate_forgets_the_old_hash_at_once(h: Harness) -> None:
    record, old = await h.service.create(_spec(name="r"))
    h.published.clear()
    new = await h.service.rotate(record.id)
    assert new != old and new.startswith("sk-sb-")
    assert await h.store.find_key(hash_key(old)) is None
    found = await h.store.find_key(hash_key(new))
    assert found is not None and found.id == record.id and found.key_prefix == new[:10] and found.name == "r"
    await _published(h, record.id)
    with pytest.raises(NotFound):
        await h.service.rotate("key_nope")


async def test_delete(h: Harness) -> None:
    record, plaintext = await h.service.create(_spec())
    h.published.clear()
    await h.service.delete(record.id)
    await _published(h, record.id)
    assert await h.store.find_key(hash_key(plaintext)) is None
    with pytest.raises(NotFound) as info:
        await h.service.delete(record.id)
    assert info.value.code == "key_not_found"


# -- spend, usage, requests ------------------------------------------------------------------------------


def _usage(
    key: KeyRecord | None, ts: float, cost: float, model: str = "m", provider: str = "p", **kw: Any
) -> UsageRecord:
    return UsageRecord(
        ts=ts,
        request_id="req_" + secrets.token_hex(4),
        key_id=key.id if key else None,
        surface="chat",
        provider=provider,
        model=model,
        status=200,
        stream=False,
        cost=cost,
        **kw,
    )


async def test_spend_counts_the_current_period_only(h: Harness) -> None:
    now = time.time()
    start = period_bounds("day", now)[0]
    daily, _ = await h.service.create(_spec(budget=10, period="day"))
    lifetime, _ = await h.service.create(_spec(budget=10))
    await h.store.add_usage(
        [
            _usage(daily, start - 10, 4.0),
            _usage(daily, start + 1, 0.25),
            _usage(lifetime, start - 10, 1.0),
            _usage(lifetime, start + 1, 0.5),
        ]
    )
    views = {v["id"]: v for v in await h.service.views(await h.service.list(), now)}
    assert views[daily.id]["spend"] == pytest.approx(0.25)
    assert views[lifetime.id]["spend"] == pytest.approx(1.5)
    assert views[daily.id]["last_used_at"] == iso(start + 1)


async def test_spend_takes_the_limiters_count_when_ahead_of_the_ledger(store: SqlStore) -> None:
    limiter = LocalLimiter()
    await limiter.start()
    bus = LocalBus()
    await bus.start()
    try:
        h = Harness(store, bus, limiter)
        now = time.time()
        record, _ = await h.service.create(_spec(budget=10, period="day"))
        start = period_bounds("day", now)[0]
        await store.add_usage([_usage(record, start + 1, 0.5)])
        assert (await h.service.views([record], now))[0]["spend"] == pytest.approx(0.5)
        limiter.seed_spend(record.id, start, 2.0)
        assert (await h.service.views([record], now))[0]["spend"] == pytest.approx(2.0)
    finally:
        await bus.close()
        await limiter.close()


async def test_usage_groups_and_since(h: Harness) -> None:
    now = time.time()
    a, _ = await h.service.create(_spec(name="a"))
    b, _ = await h.service.create(_spec(name="b"))
    await h.store.add_usage(
        [
            _usage(a, now - 60, 0.1, model="gpt", provider="openai", input_tokens=10, output_tokens=1),
            _usage(a, now - 30, 0.2, model="claude", provider="anthropic", cached_tokens=4, reasoning_tokens=2),
            _usage(b, now - 20, 0.3, model="gpt", provider="openai", cache_write_tokens=7),
            _usage(b, now - 10 * 86400, 9.0, model="gpt", provider="openai"),
        ]
    )
    by_key = {r.group: r for r in await h.service.usage("key", "7d", now=now)}
    assert set(by_key) == {a.id, b.id}
    assert by_key[a.id].requests == 2 and by_key[a.id].cost == pytest.approx(0.3)
    assert by_key[a.id].input_tokens == 10 and by_key[a.id].cached_tokens == 4 and by_key[a.id].reasoning_tokens == 2
    assert by_key[b.id].cost == pytest.approx(0.3) and by_key[b.id].cache_write_tokens == 7
    by_model = {r.group: r.requests for r in await h.service.usage("model", "30d", now=now)}
    assert by_model["anthropic/claude"] == 1 and by_model["openai/gpt"] == 3
    by_provider = {r.group: r.cost for r in await h.service.usage("provider", "1h", key_id=a.id, now=now)}
    assert by_provider == {"openai": pytest.approx(0.1), "anthropic": pytest.approx(0.2)}
    by_day = await h.service.usage("day", "30d", now=now)
    assert sum(r.requests for r in by_day) == 4 and len(by_day) >= 2
    with pytest.raises(InvalidRequest) as info:
        await h.service.usage("team", "7d")
    assert info.value.param == "group_by"


async def test_requests_newest_first_and_limit_bounds(h: Harness) -> None:
    now = time.time()
    a, _ = await h.service.create(_spec())
    await h.store.add_usage([_usage(a, now - i, 0.0) for i in range(5)] + [_usage(None, now, 0.0)])
    latest = await h.service.requests(a.id, 3)
    assert [r.ts for r in latest] == pytest.approx([now, now - 1, now - 2])
    assert len(await h.service.requests(None, 1000)) == 6
    for bad in (0, 1001):
        with pytest.raises(InvalidRequest) as info:
            await h.service.requests(None, bad)
        assert info.value.param == "limit"
