"""Routing: routes with strategies, retries with backoff, fallbacks, cooldowns, context-window fallback.

* :mod:`.config` — the ``routes``, ``retries`` and ``cooldown`` settings of ``config.json``.
* :mod:`.table` — routes checked against the registry at start; the targets a request may reach
  (its model or route, then its per-request ``fallbacks``).
* :mod:`.strategies` — a route's order for one request (fallback, weighted, least-busy, latency, cost).
* :mod:`.policy` — the one rule for what follows a failed attempt, and the backoff.
* :mod:`.health` — per target: in flight, time to first byte, failures, cooldowns.
* :mod:`.shared` — cooldowns shared by replicas through Redis (no round trip per request).
* :mod:`.engine` — :class:`~.engine.Routing` (``rt.routing``), which the pipeline calls.
* :mod:`.contract` — what routing shows of itself to metrics (:class:`~.contract.RoutingView`).
"""
