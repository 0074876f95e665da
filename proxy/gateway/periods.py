"""Budget periods: calendar days, weeks (from Monday) and months in UTC.

Periods are calendar periods rather than rolling ones so that every replica, the ledger's usage
queries and the people reading an invoice agree on when a budget resets, whatever the clock of
the replica that counted a request.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from proxy.gateway.contract import Period

__all__ = ["iso", "period_bounds"]

# The bounds of the latest period seen, per period kind: admits call period_bounds on every request,
# and datetime arithmetic costs microseconds while this check costs tens of nanoseconds.
_latest: dict[str, tuple[float, float]] = {}


def period_bounds(period: Period | None, now: float) -> tuple[float, float]:
    """Start and end (epoch seconds) of the UTC calendar period holding ``now``; (0, inf) for None.

    ``start <= now < end``; day: from midnight, week: from Monday 00:00, month: from the 1st.
    """
    if period is None:
        return 0.0, math.inf
    cached = _latest.get(period)
    if cached is not None and cached[0] <= now < cached[1]:
        return cached
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    else:
        raise ValueError(f"unknown budget period {period!r}; use day, week or month")
    bounds = (start.timestamp(), end.timestamp())
    _latest[period] = bounds
    return bounds


def iso(ts: float) -> str:
    """``2026-12-01T00:00:00Z`` (UTC, whole seconds)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
