"""Retries, fallbacks and cooldowns in /metrics: a route over two targets of a fake upstream that fails on
cue, through the real server; and the cooldown series from a stub :class:`RoutingView` (bounded labels)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from providers.registry import Registry, load_builtin_providers
from proxy.config import DiscoveryConfig, ServerConfig
from proxy.routing.config import CooldownConfig, RetryConfig, RouteConfig
from proxy.routing.contract import TargetState
from proxy.telemetry.config import MetricsConfig
from proxy.telemetry.metrics import Metrics
from proxy.telemetry.scrape import render
from tests.conftest import Proxy
from tests.fakes.openai_upstream import Action, FakeOpenAI
from tests.test_metrics import CHAT, ask, local_models, parse, scrape, total, value

_BOOM = {"error": {"message": "overloaded", "type": "server_error"}}


@pytest.fixture
def routed(isolated_env: Path, fake_openai: FakeOpenAI, start_proxy: Callable[..., Proxy]) -> Proxy:
    local_models(isolated_env, fake_openai)
    return start_proxy(
        config=ServerConfig(
            discovery=DiscoveryConfig(enabled=False),
            metrics=MetricsConfig(enabled=True),
            routes={"smart": RouteConfig(targets=["local/m", "local/other-m"], strategy="fallback")},
            retries=RetryConfig(attempts=2, backoff=0.01, max_backoff=0.01),
            cooldown=CooldownConfig(failures=2, window=60, seconds=600),
        )
    )


def test_a_retry_then_a_fallback_are_counted(routed: Proxy, fake_openai: FakeOpenAI) -> None:
    # local/m fails twice (first try and its retry), then local/other-m answers.
    fake_openai.push(Action("error", status=503, body=_BOOM))
    fake_openai.push(Action("error", status=503, body=_BOOM))
    out = ask(routed.client(), model="smart")
    assert out.choices[0].message.content
    s = scrape(routed)

    assert value(s, "switchboard_retries_total", provider="local", model="m") == 1
    assert value(s, "switchboard_fallbacks_total", provider="local", model="m") == 1
    assert value(s, "switchboard_requests_total", surface=CHAT, provider="local", model="other-m", status="200") == 1
    assert value(s, "switchboard_upstream_duration_seconds_count", provider="local", model="m", status="503") == 2
    assert value(s, "switchboard_upstream_duration_seconds_count", provider="local", model="other-m", status="200") == 1
    # Two failures within the window: local/m cools down, as routing reports at scrape time.
    assert value(s, "switchboard_cooldowns_total", provider="local", model="m") == 1
    assert value(s, "switchboard_target_cooling_down", provider="local", model="m") == 1
    assert value(s, "switchboard_target_cooling_down", provider="local", model="other-m") == 0
    assert total(s, "switchboard_target_in_flight") == 0


class _Stub:
    def __init__(self, states: Sequence[TargetState]) -> None:
        self._states = states

    def states(self) -> Sequence[TargetState]:
        return self._states


async def test_routing_state_is_read_at_scrape_time_with_bounded_labels() -> None:
    registry = Registry(load_builtin_providers())
    now = time.time()
    stub = _Stub(
        [
            TargetState("openai/gpt-4o", in_flight=2, cooldowns=3, cooling_until=now + 30),
            TargetState("openai/client-invented-1", in_flight=1, cooldowns=1, cooling_until=None),
            TargetState("openai/client-invented-2", in_flight=0, cooldowns=2, cooling_until=now - 5),
            TargetState("nosuchprovider/x", in_flight=0, cooldowns=4, cooling_until=None),
        ]
    )
    text = (await render(Metrics(), registry=registry, routing=stub)).decode()
    assert "client-invented" not in text and "nosuchprovider" not in text
    s = parse(text)
    assert value(s, "switchboard_cooldowns_total", provider="openai", model="gpt-4o") == 3
    assert value(s, "switchboard_target_cooling_down", provider="openai", model="gpt-4o") == 1
    assert value(s, "switchboard_target_in_flight", provider="openai", model="gpt-4o") == 2
    # Unknown models add up under "other"; a cooldown that has ended reads 0.
    assert value(s, "switchboard_cooldowns_total", provider="openai", model="other") == 3
    assert value(s, "switchboard_target_cooling_down", provider="openai", model="other") == 0
    assert value(s, "switchboard_cooldowns_total", provider="other", model="other") == 4


async def test_two_apps_in_one_process_do_not_share_series() -> None:
    a, b = Metrics(), Metrics()
    a.started(CHAT)
    registry = Registry(load_builtin_providers())
    assert value(parse((await render(a, registry=registry)).decode()), "switchboard_in_flight_requests", surface=CHAT)
    assert not value(
        parse((await render(b, registry=registry)).decode()), "switchboard_in_flight_requests", surface=CHAT
    )
