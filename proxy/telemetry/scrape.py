"""``GET /metrics``: who may read it, and the series read at scrape time rather than per request.

* Access: with the gateway on, the master key or the metrics token (``metrics.token``); without it, the
  metrics token when one is configured, else anyone (the server binds loopback unless told otherwise).
* Routing's state, from :class:`proxy.routing.contract.RoutingView` when there is one::

      switchboard_cooldowns_total{provider,model}         cooldowns started since the process started
      switchboard_target_cooling_down{provider,model}     1 while the target cools down
      switchboard_target_in_flight{provider,model}        requests in flight to it

* Per virtual key, only with ``metrics.per_key`` (one series per key)::

      switchboard_key_budget_usd{key_id}                  the key's budget for its period
      switchboard_key_budget_remaining_usd{key_id}        budget less the period's spend (the limiter's)
      switchboard_key_rpm_limit{key_id}, switchboard_key_tpm_limit{key_id}

  The keys come from the store, the spend from the limiter (a Redis round trip per key with Redis):
  one scrape every few seconds at most, not per request.

Each replica answers for itself; Prometheus adds them up.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from providers.errors import SwitchboardError

from .facts import OTHER_MODEL

if TYPE_CHECKING:
    from providers.registry import Registry

    from ..gateway.contract import KeyRecord
    from ..gateway.gateway import Gateway
    from ..routing.contract import RoutingView, TargetState
    from .metrics import Metrics

__all__ = ["may_scrape", "render"]

log = logging.getLogger("switchboard")


def may_scrape(token: str | None, metrics_token: str | None, gateway: Gateway | None) -> bool:
    """Whether a request bearing ``token`` may read /metrics (see the module docstring)."""
    if token is not None:
        if metrics_token is not None and hmac.compare_digest(token.encode(), metrics_token.encode()):
            return True
        if gateway is not None and gateway.is_master(token):
            return True
    return gateway is None and metrics_token is None


async def render(
    metrics: Metrics,
    *,
    registry: Registry,
    routing: RoutingView | None = None,
    gateway: Gateway | None = None,
    per_key: bool = False,
) -> bytes:
    """The Prometheus text of this process: the request series and those read now."""
    families: list[Metric] = []
    if routing is not None:
        families.extend(_routing_families(routing.states(), registry))
    if per_key and gateway is not None:
        families.extend(await _key_families(gateway))
    text = generate_latest(metrics.registry)
    if not families:
        return text
    # The scrape-time series go through a registry of their own: concurrent scrapes share nothing.
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_Families(families))
    return text + generate_latest(extra)


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _bounded(public_id: str, registry: Registry) -> tuple[str, str]:
    """A ``provider/model`` id as bounded labels (as :func:`proxy.telemetry.facts.target_labels`)."""
    head, _, rest = public_id.partition("/")
    provider = registry.get(head)
    if provider is None:
        return OTHER_MODEL, OTHER_MODEL
    return head, rest if provider.model(rest) is not None else OTHER_MODEL


def _routing_families(states: Sequence[TargetState], registry: Registry) -> list[Metric]:
    labels = ["provider", "model"]
    cooldowns = CounterMetricFamily(
        "switchboard_cooldowns", "Cooldowns started for a target since the process started.", labels=labels
    )
    cooling = GaugeMetricFamily("switchboard_target_cooling_down", "1 while the target cools down.", labels=labels)
    in_flight = GaugeMetricFamily("switchboard_target_in_flight", "Requests in flight to the target.", labels=labels)
    # Targets that share labels (several unknown models are all "other") are added up.
    sums: dict[tuple[str, str], list[float]] = {}
    now = time.time()
    for state in states:
        row = sums.setdefault(_bounded(state.target, registry), [0.0, 0.0, 0.0])
        row[0] += state.cooldowns
        row[1] = max(row[1], 1.0 if state.cooling_until is not None and state.cooling_until > now else 0.0)
        row[2] += state.in_flight
    for key, (count, cool, flight) in sums.items():
        cooldowns.add_metric(key, count)
        cooling.add_metric(key, cool)
        in_flight.add_metric(key, flight)
    return [cooldowns, cooling, in_flight]


async def _key_families(gateway: Gateway) -> list[Metric]:
    try:
        keys = [k for k in await gateway.store.list_keys() if not k.disabled]
    except SwitchboardError as exc:
        log.warning("/metrics: per-key series left out: %s", exc.message)
        return []
    budget = GaugeMetricFamily("switchboard_key_budget_usd", "The key's budget for its period.", labels=["key_id"])
    remaining = GaugeMetricFamily(
        "switchboard_key_budget_remaining_usd", "The key's budget less its period's spend.", labels=["key_id"]
    )
    rpm = GaugeMetricFamily("switchboard_key_rpm_limit", "The key's requests per minute.", labels=["key_id"])
    tpm = GaugeMetricFamily("switchboard_key_tpm_limit", "The key's tokens per minute.", labels=["key_id"])
    budgeted = [k for k in keys if k.budget is not None]
    now = time.time()
    spent = await asyncio.gather(*(_spent(gateway, k, now) for k in budgeted))
    for key, spend in zip(budgeted, spent, strict=True):
        assert key.budget is not None
        budget.add_metric([key.id], key.budget)
        if spend is not None:
            remaining.add_metric([key.id], max(0.0, key.budget - spend))
    rpm_left = GaugeMetricFamily(
        "switchboard_key_requests_remaining", "Requests the key may still make in its 60 s window.", labels=["key_id"]
    )
    tpm_left = GaugeMetricFamily(
        "switchboard_key_tokens_remaining", "Tokens the key may still use in its 60 s window.", labels=["key_id"]
    )
    limited = [k for k in keys if k.rpm is not None or k.tpm is not None]
    windows = await asyncio.gather(*(_window(gateway, k, now) for k in limited))
    for key, window in zip(limited, windows, strict=True):
        if key.rpm is not None:
            rpm.add_metric([key.id], key.rpm)
            if window is not None:
                rpm_left.add_metric([key.id], max(0, key.rpm - window[0]))
        if key.tpm is not None:
            tpm.add_metric([key.id], key.tpm)
            if window is not None:
                tpm_left.add_metric([key.id], max(0, key.tpm - window[1]))
    return [budget, remaining, rpm, tpm, rpm_left, tpm_left]


async def _window(gateway: Gateway, key: KeyRecord, now: float) -> tuple[int, int] | None:
    try:
        return await gateway.limiter.window(key, now)
    except Exception as exc:
        log.warning("/metrics: the rate window of key %s is unknown: %r", key.id, exc)
        return None


async def _spent(gateway: Gateway, key: KeyRecord, now: float) -> float | None:
    try:
        return await gateway.limiter.spent(key, now)
    except Exception as exc:
        # A scrape must answer: one key's figure missing is better than no metrics at all.
        log.warning("/metrics: the spend of key %s is unknown: %r", key.id, exc)
        return None
