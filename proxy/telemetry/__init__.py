"""Metrics, traces and the access log: what an operator watches, fed by the pipeline's :class:`Outcome`.

::

    Pipeline.handle ── observer.started(outcome, scope) ─▶ Telemetry (observer.py)
                    └─ observer.ended(outcome) ──────────▶   │  usage and cost, one rule (facts.py)
                                                             ├── Metrics    Prometheus: metrics.py; GET /metrics,
                                                             │              cooldowns, per-key gauges: scrape.py
                                                             ├── Tracing    OpenTelemetry spans (tracing.py);
                                                             │              with capture_content, prompts and
                                                             │              answers (content*.py)
                                                             └── AccessLog  one JSON line a request (access_log.py)
    every other route ── RequestIds (request_id.py): x-request-id on its answers

Each part is switched on in config.json (:mod:`proxy.telemetry.config`); with all off ``rt.observer`` is
None and nothing is paid. This package's ``__init__`` imports nothing: ``proxy.config`` reads its
Structs, and prometheus_client and OpenTelemetry load only when their part is on.
"""
