"""The ``metrics``, ``tracing`` and ``access_log`` sections of config.json. Example::

    {
      "metrics": {"enabled": true, "token": "$SWITCHBOARD_METRICS_TOKEN", "per_key": false},
      "tracing": {"enabled": null, "capture_content": false},
      "access_log": {"enabled": true, "path": null}
    }

* ``metrics``: ``GET /metrics`` in Prometheus's text format. ``token`` (literal, ``$VAR`` or ``!command``
  like ``master_key``) lets a scraper in without the master key; without the gateway and without a token
  the endpoint is open (the server binds loopback only when clients need no key). ``per_key`` adds each
  virtual key's remaining budget and rate limits (one series per key: opt in when keys are few).
* ``tracing``: OpenTelemetry spans exported by OTLP/HTTP (``pip install 'switchboard[otel]'``). ``null``
  (the default): on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is
  set; ``true``: on (the SDK's default endpoint unless those say otherwise); ``false``: off. The
  exporter, sampler and batching read the standard ``OTEL_*`` variables. ``capture_content``: also record
  prompts and answers on the request span (``gen_ai.input.messages``, ``gen_ai.system_instructions``,
  ``gen_ai.output.messages``, ``gen_ai.response.finish_reasons``); off by default.
* ``access_log``: one JSON line per request to ``path`` (appended), or to stderr when ``path`` is null.
"""

from __future__ import annotations

import msgspec

__all__ = ["AccessLogConfig", "MetricsConfig", "TracingConfig"]


class MetricsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    #: A bearer token that may read /metrics besides the master key (literal, ``$VAR``, ``!command``).
    token: str | None = None
    #: Remaining budget, requests and tokens per virtual key, read at scrape time.
    per_key: bool = False


class TracingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    #: None: on when an ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` variable is set.
    enabled: bool | None = None
    #: Message contents in spans (prompts and answers are often confidential: off unless asked).
    capture_content: bool = False


class AccessLogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    #: A file the lines are appended to; None: stderr.
    path: str | None = None
