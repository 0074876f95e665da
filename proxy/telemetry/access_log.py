"""The JSON access log: one line per request, written by a thread of its own (never the event loop).

A line (keys always present; null when unknown)::

    {"ts": "2026-11-27T18:02:03.123Z", "request_id": "req_…", "key_id": "key_…", "surface":
     "/v1/chat/completions", "model": "fast", "target": "openai/gpt-4o", "status": 200, "error": null,
     "stream": true, "attempts": 1, "input_tokens": 12, "output_tokens": 9, "cached_tokens": 0,
     "cache_write_tokens": 0, "reasoning_tokens": 0, "cost_usd": 0.000096, "latency_ms": 812.4,
     "ttft_ms": 301.2, "upstream_ms": 790.1}

``ts`` is when the request ended; ``key_id`` the virtual key's id (``master`` for the master key, null
without the gateway), never the key; ``model`` the name the client sent (cut at 256 characters);
``ttft_ms`` when the answer's head left (a stream's first event; the whole answer otherwise), as in the
usage ledger; ``upstream_ms`` the time spent in upstream attempts. Nothing else from the request is
written: no header, no body.

Each line is encoded on the event loop and queued as a string; a
:class:`~logging.handlers.QueueListener` thread makes it a log record and hands it to a handler that
writes it to stderr or appends it to a file (reopened when logrotate moves it:
:class:`~logging.handlers.WatchedFileHandler`). The request path pays for the encoding and a queue put,
not for the logging machinery (a LogRecord, its caller lookup and copy: ~5x the cost).
"""

from __future__ import annotations

import logging
import queue
import sys
import time
from logging.handlers import QueueListener, WatchedFileHandler
from typing import TYPE_CHECKING, Any

import msgspec

from .facts import Facts, key_id_of

if TYPE_CHECKING:
    from ..outcome import Outcome

__all__ = ["AccessLog"]

_ENCODE = msgspec.json.Encoder().encode


class AccessLog:
    def __init__(self, path: str | None) -> None:
        target: logging.Handler = (
            logging.StreamHandler(sys.stderr) if path is None else WatchedFileHandler(path, encoding="utf-8")
        )
        target.setFormatter(logging.Formatter("%(message)s"))
        # This instance's own queue and writer: two apps in one process (tests) keep their lines apart,
        # and nothing reaches the server's log.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._listener = _Writer(self._queue, target)
        self._target = target
        self._listener.start()

    def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        self._listener.stop()
        self._target.close()

    def ended(self, outcome: Outcome, facts: Facts) -> None:
        end = outcome.ended or outcome.started
        usage = facts.usage
        target = outcome.target
        upstream = sum((a.ended or end) - a.started for a in outcome.attempts)
        line: dict[str, Any] = {
            "ts": _iso(time.time()),
            "request_id": outcome.request_id,
            "key_id": key_id_of(outcome.caller),
            "surface": outcome.surface,
            "model": outcome.requested[:256] if outcome.requested is not None else None,
            "target": target.public_id if target is not None else None,
            "status": outcome.status,
            "error": outcome.error_type,
            "stream": outcome.stream,
            "attempts": len(outcome.attempts),
            "input_tokens": usage.input_tokens if usage is not None else None,
            "output_tokens": usage.output_tokens if usage is not None else None,
            "cached_tokens": usage.cache_read_tokens if usage is not None else None,
            "cache_write_tokens": usage.cache_write_tokens if usage is not None else None,
            "reasoning_tokens": usage.reasoning_tokens if usage is not None else None,
            "cost_usd": round(facts.cost, 9),
            "latency_ms": round((end - outcome.started) * 1000.0, 3),
            "ttft_ms": round((outcome.first_byte - outcome.started) * 1000.0, 3)
            if outcome.first_byte is not None
            else None,
            "upstream_ms": round(upstream * 1000.0, 3),
        }
        self._queue.put_nowait(_ENCODE(line).decode())


class _Writer(QueueListener):
    """Turns each queued line into a record in its own thread, then writes it."""

    def prepare(self, record: Any) -> logging.LogRecord:
        return logging.makeLogRecord({"name": "switchboard.access", "msg": record, "levelno": logging.INFO})


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
