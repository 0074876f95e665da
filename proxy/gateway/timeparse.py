"""Times people type for the admin API and the CLI: ``--expires 2h``, ``?since=7d``.

Both accept a duration (``30m``, ``2h``, ``7d``, ``2w``; ``s`` too), a date (``YYYY-MM-DD``, midnight UTC
starting that day), an ISO 8601 datetime (UTC unless it names an offset) or epoch seconds. A duration
counts forward from now for an expiry and back from now for ``since``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from providers.errors import InvalidRequest

__all__ = ["parse_expires", "parse_since"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_FORMS = "a duration (30m, 2h, 7d), a date (YYYY-MM-DD), an ISO datetime or epoch seconds"


def parse_expires(value: str | float, now: float, *, field: str = "expires") -> float:
    """The epoch second a key expires at; refused when it is not in the future (a key born expired is a
    mistake; ``disabled`` turns a key off)."""
    duration = _duration(value)
    at = now + duration if duration is not None else _absolute(value, field)
    if at <= now:
        raise InvalidRequest(
            f"{field} is in the past; give a future time ({_FORMS}), or set disabled to turn the key off",
            param=field,
        )
    return at


def parse_since(value: str | float, now: float, *, field: str = "since") -> float:
    """The epoch second a usage window starts at."""
    duration = _duration(value)
    return now - duration if duration is not None else _absolute(value, field)


def _duration(value: str | float) -> float | None:
    if not isinstance(value, str):
        return None
    m = _DURATION.fullmatch(value.strip().lower())
    return float(m.group(1)) * _UNIT[m.group(2)] if m else None


def _absolute(value: str | float, field: str) -> float:
    if isinstance(value, bool):
        raise InvalidRequest(f"{field} must be {_FORMS}; got a boolean", param=field)
    if isinstance(value, int | float):
        return _finite(float(value), field)
    text = value.strip()
    try:
        return _finite(float(text), field)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith(("Z", "z")) else text)
    except ValueError:
        # The input is a time people typed, never a secret: safe to echo so they see the typo.
        raise InvalidRequest(f"{field} must be {_FORMS}; got {text[:40]!r}", param=field) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise InvalidRequest(f"{field} must be {_FORMS}; got a number that is not finite", param=field)
    return value
