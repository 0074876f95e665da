"""Prometheus metrics of the requests this process served (one :class:`CollectorRegistry` per Runtime).

Series (every label value is bounded: surfaces are Switchboard's paths, providers and models the
registry's — a model the catalog does not list is ``other`` —, statuses HTTP codes)::

    switchboard_requests_total{surface,provider,model,status}          requests answered, refused ones too
    switchboard_request_duration_seconds{surface,provider,model}       arrival → last byte (histogram)
    switchboard_upstream_duration_seconds{provider,model,status}       one upstream attempt (histogram)
    switchboard_time_to_first_token_seconds{surface,provider,model}    arrival → the stream's head (streams)
    switchboard_overhead_seconds{surface}                              request - upstream - backoff waits
    switchboard_tokens_total{provider,model,type}                      input (cache included), cached,
                                                                       cache_write, output (reasoning
                                                                       included), reasoning
    switchboard_cost_usd_total{provider,model}                         priced with the model's prices
    switchboard_retries_total{provider,model}                          another attempt on the same target
    switchboard_fallbacks_total{provider,model}                        the target was left for another one
    switchboard_in_flight_requests{surface}                            requests being served

Requests refused before a target was tried (a bad key, a limit, an unknown model) have ``provider`` and
``model`` ``none``; ``status`` is the client's (499: it left; 503: the server stopped). Scrape-time
series (cooldowns, per-key limits) are in :mod:`proxy.telemetry.scrape`.

Cost on the request path, which must stay within 5% of a passthrough's: the figures are plain numbers
in lists, one per label tuple, created once and kept in dicts; :meth:`Metrics.ended` adds to them (a
histogram observation is a bisect and two additions). prometheus_client's own children take a lock and
check their type on every call, about three times as much for the same series (measured: ~8 µs against
~2.5 µs a request). Only the event loop writes and reads them (scrapes are async handlers), so no lock
is needed. :class:`_Collector` turns them into prometheus_client's metric families at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from providers.pricing import cost_for

from .facts import target_labels

if TYPE_CHECKING:
    from providers.canonical import Usage

    from ..outcome import Attempt, Outcome
    from ..router import Target

__all__ = ["Metrics"]

#: What :meth:`Metrics.ended` keeps of a request until it is recorded.
_Ended = tuple[str, "Target | None", int, float, float, "float | None", "list[Attempt]", float, "Usage | None"]
#: Requests recorded at once (a scrape records what is pending first, so it never reads stale figures).
_BATCH = 128
#: Whole requests and upstream attempts: milliseconds (a fake, a cache hit) to many minutes (long answers).
_DURATION = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)
_TTFT = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
#: Switchboard's own time: tens of microseconds to a few milliseconds.
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_TOKEN_TYPES = ("input", "cached", "cache_write", "output", "reasoning")

#: A histogram's figures: ``[sum, count in bucket 0, …, count above the last bound]``.
Hist = list[float]


def _hist(bounds: Sequence[float]) -> Hist:
    return [0.0] * (len(bounds) + 2)


def _observe(h: Hist, bounds: Sequence[float], value: float) -> None:
    h[0] += value
    h[1 + bisect_left(bounds, value)] += 1  # Prometheus buckets are "less than or equal"


class _Request:
    """The figures of one (surface, provider, model, status), with its surface's and target's."""

    __slots__ = ("count", "duration", "overhead", "target", "ttft")

    def __init__(self, overhead: Hist, duration: Hist, ttft: Hist, target: _Target) -> None:
        self.count = 0
        self.duration = duration
        self.ttft = ttft
        self.overhead = overhead
        self.target = target


class _Target:
    """The figures of one (provider, model)."""

    __slots__ = ("cost", "fallbacks", "retries", "tokens", "upstream")

    def __init__(self) -> None:
        #: In :data:`_TOKEN_TYPES` order.
        self.tokens = [0, 0, 0, 0, 0]
        self.cost = 0.0
        self.retries = 0
        self.fallbacks = 0
        #: upstream status → its attempts' durations.
        self.upstream: dict[int, Hist] = {}

    def attempt(self, status: int) -> Hist:
        h = self.upstream.get(status)
        if h is None:
            h = self.upstream[status] = _hist(_DURATION)
        return h


class Metrics:
    """The request-path half: :meth:`started` and :meth:`ended`, called by :class:`Telemetry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        self.in_flight: dict[str, int] = {}
        self.requests: dict[tuple[str, str, str, int], _Request] = {}
        self.targets: dict[tuple[str, str], _Target] = {}
        #: (surface, provider, model) → the duration and time-to-first-token figures (any status).
        self.timings: dict[tuple[str, str, str], tuple[Hist, Hist]] = {}
        self.overhead: dict[str, Hist] = {}
        #: Requests ended and not yet recorded (see :meth:`ended`).
        self._pending: list[_Ended] = []

    def started(self, surface: str) -> None:
        self.in_flight[surface] = self.in_flight.get(surface, 0) + 1

    def ended(self, outcome: Outcome, usage: Usage | None) -> None:
        self.in_flight[outcome.surface] -= 1
        # Recorded in batches (and before every scrape): one pass over many requests keeps this code and its
        # tables in the CPU's caches, where one request at a time between two others' work did not (measured:
        # ~9 us a request in the server against ~3 us in a loop). Only what the figures need is kept, not the
        # Outcome (its leg holds the request's body).
        pending = self._pending
        pending.append(
            (
                outcome.surface,
                outcome.target,
                outcome.status,
                outcome.started,
                outcome.ended or outcome.started,
                outcome.first_byte if outcome.stream else None,
                outcome.attempts,
                outcome.waited,
                usage,
            )
        )
        if len(pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        """Record the requests ended since the last flush."""
        pending, self._pending = self._pending, []
        for item in pending:
            self._record(*item)

    def _record(
        self,
        surface: str,
        final: Target | None,
        status: int,
        start: float,
        end: float,
        first_byte: float | None,
        attempts: list[Attempt],
        waited: float,
        usage: Usage | None,
    ) -> None:
        key = (surface, *target_labels(final), status)
        series = self.requests.get(key)
        if series is None:
            series = self.requests[key] = self._request(key)
        series.count += 1
        _observe(series.duration, _DURATION, end - start)
        if first_byte is not None:
            _observe(series.ttft, _TTFT, first_byte - start)
        upstream = 0.0
        previous: Target | None = None
        for attempt in attempts:
            took = (attempt.ended or end) - attempt.started
            upstream += took
            tried = attempt.target
            # Most requests make one attempt, on the target they end with: its figures are at hand.
            at = series.target if tried is final else self.target(target_labels(tried))
            _observe(at.attempt(attempt.status), _DURATION, took)
            if previous is not None:
                if tried.public_id == previous.public_id:
                    at.retries += 1
                else:
                    self.target(target_labels(previous)).fallbacks += 1
            previous = tried
        _observe(series.overhead, _OVERHEAD, max(0.0, end - start - upstream - waited))
        if usage is not None:
            tokens = series.target.tokens
            tokens[0] += usage.input_tokens
            tokens[1] += usage.cache_read_tokens
            tokens[2] += usage.cache_write_tokens
            tokens[3] += usage.output_tokens
            tokens[4] += usage.reasoning_tokens
            series.target.cost += cost_for(final.model if final is not None else None, usage)

    def target(self, labels: tuple[str, str]) -> _Target:
        found = self.targets.get(labels)
        if found is None:
            found = self.targets[labels] = _Target()
        return found

    def _request(self, key: tuple[str, str, str, int]) -> _Request:
        surface, provider, model, _ = key
        timings = self.timings.get((surface, provider, model))
        if timings is None:
            timings = self.timings[(surface, provider, model)] = (_hist(_DURATION), _hist(_TTFT))
        overhead = self.overhead.get(surface)
        if overhead is None:
            overhead = self.overhead[surface] = _hist(_OVERHEAD)
        return _Request(overhead, *timings, self.target((provider, model)))


class _Collector(Collector):
    """:class:`Metrics`' figures as prometheus_client metric families (at scrape time)."""

    def __init__(self, m: Metrics) -> None:
        self._m = m

    def collect(self) -> Iterable[Metric]:
        m = self._m
        m.flush()
        requests = CounterMetricFamily(
            "switchboard_requests", "Requests answered.", labels=["surface", "provider", "model", "status"]
        )
        for (surface, provider, model, status), series in m.requests.items():
            requests.add_metric([surface, provider, model, str(status)], series.count)
        yield requests
        yield _histogram(
            "switchboard_request_duration_seconds",
            "From a request's arrival to its last byte.",
            ["surface", "provider", "model"],
            _DURATION,
            ((list(k), d) for k, (d, _) in m.timings.items()),
        )
        yield _histogram(
            "switchboard_upstream_duration_seconds",
            "One upstream attempt, from sending it to its answer's end (its status: 0 when none came).",
            ["provider", "model", "status"],
            _DURATION,
            (([*k, str(s)], h) for k, t in m.targets.items() for s, h in t.upstream.items()),
        )
        yield _histogram(
            "switchboard_time_to_first_token_seconds",
            "From a streamed request's arrival to its answer's head leaving Switchboard.",
            ["surface", "provider", "model"],
            _TTFT,
            ((list(k), t) for k, (_, t) in m.timings.items() if any(t[1:])),
        )
        yield _histogram(
            "switchboard_overhead_seconds",
            "Switchboard's own time in a request: its duration less upstream attempts and backoff waits.",
            ["surface"],
            _OVERHEAD,
            (([s], h) for s, h in m.overhead.items()),
        )
        labels = ["provider", "model"]
        tokens = CounterMetricFamily(
            "switchboard_tokens",
            "Tokens used; input includes cached and cache_write, output includes reasoning.",
            labels=[*labels, "type"],
        )
        cost = CounterMetricFamily("switchboard_cost_usd", "Cost in US dollars.", labels=labels)
        retries = CounterMetricFamily("switchboard_retries", "Attempts repeated on the same target.", labels=labels)
        fallbacks = CounterMetricFamily(
            "switchboard_fallbacks", "Times a failed target was left for the next one.", labels=labels
        )
        for (provider, model), t in m.targets.items():
            for kind, n in zip(_TOKEN_TYPES, t.tokens, strict=True):
                tokens.add_metric([provider, model, kind], n)
            cost.add_metric([provider, model], t.cost)
            retries.add_metric([provider, model], t.retries)
            fallbacks.add_metric([provider, model], t.fallbacks)
        yield from (tokens, cost, retries, fallbacks)
        in_flight = GaugeMetricFamily("switchboard_in_flight_requests", "Requests being served.", labels=["surface"])
        for surface, n in m.in_flight.items():
            in_flight.add_metric([surface], n)
        yield in_flight


def _histogram(
    name: str, doc: str, labels: list[str], bounds: Sequence[float], rows: Iterable[tuple[list[str], Hist]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    edges = [repr(float(b)) for b in bounds] + ["+Inf"]
    for values, h in rows:
        cumulative, buckets = 0.0, []
        for edge, n in zip(edges, h[1:], strict=True):
            cumulative += n
            buckets.append((edge, cumulative))
        family.add_metric(values, buckets, h[0])
    return family
