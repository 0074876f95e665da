"""The pipeline's :class:`proxy.outcome.Observer`: fans each request out to metrics, traces and the log.

:func:`build_telemetry` reads the config (and the ``OTEL_*`` environment) once, at start-up; it returns
None when everything is off, and the pipeline then pays nothing. Each part is imported only when on
(prometheus_client, the OpenTelemetry SDK).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from providers.errors import ConfigError
from providers.keyvalue import resolve_key_value

from .facts import Facts

if TYPE_CHECKING:
    from ..asgi import Scope
    from ..config import Paths, ServerConfig
    from ..outcome import Outcome
    from .access_log import AccessLog
    from .metrics import Metrics
    from .tracing import Tracing

__all__ = ["Telemetry", "build_telemetry", "tracing_wanted"]

log = logging.getLogger("switchboard")

_OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class Telemetry:
    """What is on of metrics, tracing and the access log; an :class:`Observer` of every request.

    ``started`` and ``ended`` never raise: a broken exporter must not fail requests (it is logged once).
    """

    def __init__(
        self,
        metrics: Metrics | None,
        tracing: Tracing | None,
        access_log: AccessLog | None,
        *,
        metrics_token: str | None = None,
        per_key: bool = False,
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.access_log = access_log
        #: The bearer token that may read /metrics besides the master key (resolved at start-up).
        self.metrics_token = metrics_token
        #: /metrics includes each virtual key's remaining budget and limits.
        self.per_key = per_key
        #: The pipeline keeps each request's and answer's bytes for the spans (``tracing.capture_content``).
        self.capture_content = tracing is not None and tracing.capture_content
        self._failed = False

    def started(self, outcome: Outcome, scope: Scope) -> None:
        try:
            if self.metrics is not None:
                self.metrics.started(outcome.surface)
            if self.tracing is not None:
                self.tracing.started(outcome, scope)
        except Exception:
            self._log_failure()

    def ended(self, outcome: Outcome) -> None:
        try:
            usage = outcome.usage()
            if self.metrics is not None:
                self.metrics.ended(outcome, usage)  # prices it later, in a batch
            if self.tracing is not None or self.access_log is not None:
                facts = Facts(outcome.target, usage)
                if self.tracing is not None:
                    self.tracing.ended(outcome, facts)
                if self.access_log is not None:
                    self.access_log.ended(outcome, facts)
        except Exception:
            self._log_failure()

    def close(self) -> None:
        """Flush the spans and the log lines still queued (the server is stopping)."""
        if self.tracing is not None:
            self.tracing.close()
        if self.access_log is not None:
            self.access_log.close()

    def _log_failure(self) -> None:
        if not self._failed:
            self._failed = True
            log.exception("telemetry failed for a request (logged once; requests are served regardless)")


def tracing_wanted(enabled: bool | None, env: Mapping[str, str]) -> bool:
    """``tracing.enabled``, else (null) whether an OTLP endpoint variable is set; ``OTEL_SDK_DISABLED``
    switches it off either way."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if enabled is not None:
        return enabled
    return any(env.get(name) for name in _OTLP_ENDPOINTS)


def build_telemetry(config: ServerConfig, paths: Paths, env: Mapping[str, str] | None = None) -> Telemetry | None:
    """The Telemetry the config asks for; None when metrics, tracing and the access log are all off."""
    env = os.environ if env is None else env
    metrics: Metrics | None = None
    tracing: Tracing | None = None
    access_log: AccessLog | None = None
    token: str | None = None
    if config.metrics.enabled:
        from .metrics import Metrics

        metrics = Metrics()
        if config.metrics.token:
            token = resolve_key_value(config.metrics.token, env=env, source=paths.config_json)
            if not token:
                raise ConfigError(
                    f"metrics.token in {paths.config_json} does not resolve to a token (an unset variable, or a "
                    "command that printed nothing)"
                )
    if config.access_log.enabled:
        from .access_log import AccessLog

        try:
            access_log = AccessLog(config.access_log.path)
        except OSError as exc:
            raise ConfigError(
                f"access_log.path in {paths.config_json}: cannot open {config.access_log.path} for appending "
                f"({exc.strerror or exc}); name a writable file, or null for stderr"
            ) from exc
    # Last: the exporter's thread starts only once nothing else can fail.
    if tracing_wanted(config.tracing.enabled, env):
        tracing = _tracing(config.tracing.capture_content)
    if metrics is None and tracing is None and access_log is None:
        return None
    return Telemetry(metrics, tracing, access_log, metrics_token=token, per_key=config.metrics.per_key)


def _tracing(capture_content: bool) -> Tracing | None:
    try:
        from .tracing import Tracing
    except ImportError as exc:
        log.warning(
            "tracing is asked for (tracing.enabled or OTEL_EXPORTER_OTLP_ENDPOINT) but the OpenTelemetry SDK is not "
            "installed (%s): install it with pip install 'switchboard[otel]'; traces are off",
            exc.name or exc,
        )
        return None
    if capture_content:
        log.warning(
            "tracing.capture_content is on: prompts and answers are recorded in spans "
            "(gen_ai.input.messages, gen_ai.output.messages); they may be confidential"
        )
    log.info("tracing on: spans exported over OTLP/HTTP")
    return Tracing(capture_content=capture_content)
