"""The dashboard's daily usage query on both engines: one row per UTC day and model (or provider), a key
filter, and nothing before ``since``."""

from __future__ import annotations

from proxy.gateway.store import SqlStore, daily_usage
from tests.test_gateway_store import pg_database, store, store_url, ts, usage_record

__all__ = ["pg_database", "store", "store_url"]  # fixtures, imported for this module's tests


async def test_daily_usage_per_utc_day_and_model_or_provider(store: SqlStore) -> None:
    day1 = ts("2025-03-09T23:59:59")
    day2 = ts("2025-03-10T00:00:00")
    await store.add_usage(
        [
            usage_record(day1, key_id="key_a", provider="openai", model="gpt-4o", cost=1.0, input_tokens=10),
            usage_record(day1 - 60, key_id="key_a", provider="openai", model="gpt-4o", cost=0.5, output_tokens=4),
            usage_record(day2, key_id="key_a", provider="anthropic", model="claude", cost=5.0, output_tokens=7),
            usage_record(day2 + 5, key_id="key_b", provider="openai", model="o3", cost=2.0, reasoning_tokens=3),
            usage_record(day1 - 86400, key_id="key_a", cost=1000.0),  # before `since`
        ]
    )
    since = day1 - 3600

    by_model = await daily_usage(store, "model", since)
    assert [(r.day, r.group, r.requests, r.cost) for r in by_model] == [
        ("2025-03-09", "openai/gpt-4o", 2, 1.5),
        ("2025-03-10", "anthropic/claude", 1, 5.0),
        ("2025-03-10", "openai/o3", 1, 2.0),
    ]
    assert (by_model[0].input_tokens, by_model[0].output_tokens) == (10, 4)
    assert by_model[2].reasoning_tokens == 3

    by_provider = await daily_usage(store, "provider", since)
    assert [(r.day, r.group, r.requests) for r in by_provider] == [
        ("2025-03-09", "openai", 2),
        ("2025-03-10", "anthropic", 1),
        ("2025-03-10", "openai", 1),
    ]

    only_b = await daily_usage(store, "provider", 0, key_id="key_b")
    assert [(r.day, r.group, r.cost) for r in only_b] == [("2025-03-10", "openai", 2.0)]
    assert await daily_usage(store, "model", day2 + 100) == []
