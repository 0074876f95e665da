"""What routing knows of each target in this process: requests in flight, recent time to first byte,
recent failures, and its cooldown.

Kept in process and updated on the request path with plain arithmetic (no lock: one event loop). A
cooldown started here is announced to the other replicas through :attr:`Health.announce` (see
:mod:`proxy.routing.shared`); one announced by another replica arrives through :meth:`Health.cool`.
Cooldown ends are epoch seconds, so replicas compare them on the same clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from .config import CooldownConfig
from .contract import TargetState

__all__ = ["COOLDOWN_CAP", "Health", "TargetHealth"]

#: A ``retry-after`` longer than this (a daily quota) cools a target down for this long at most.
COOLDOWN_CAP = 3600.0
#: Targets remembered at most: per-request ``fallbacks`` may name any model, so idle ones make room.
_LIMIT = 4096
#: Weight of the newest time-to-first-byte sample in the moving average.
_ALPHA = 0.3


class TargetHealth:
    __slots__ = ("cooldowns", "cooling_until", "failures", "in_flight", "ttfb")

    def __init__(self) -> None:
        self.in_flight = 0
        #: Moving average of the seconds to the upstream's answer head; None: never measured.
        self.ttfb: float | None = None
        #: Epoch seconds of the failures within the window.
        self.failures: deque[float] = deque()
        #: Epoch seconds the current cooldown ends (0: none).
        self.cooling_until = 0.0
        #: Cooldowns started (here or announced by another replica) since the process started.
        self.cooldowns = 0

    def cooling(self, now: float) -> bool:
        return self.cooling_until > now

    def measured(self, seconds: float) -> None:
        self.ttfb = seconds if self.ttfb is None else self.ttfb + _ALPHA * (seconds - self.ttfb)


class Health:
    """Every target's :class:`TargetHealth`, by ``provider/model``."""

    def __init__(self, config: CooldownConfig) -> None:
        self._config = config
        self._targets: dict[str, TargetHealth] = {}
        #: Called with (target, until) when a cooldown starts here (set by the Redis sharing).
        self.announce: Callable[[str, float], None] | None = None

    def of(self, target: str) -> TargetHealth:
        found = self._targets.get(target)
        if found is None:
            if len(self._targets) >= _LIMIT:
                self._forget_idle()
            found = self._targets[target] = TargetHealth()
        return found

    def _forget_idle(self) -> None:
        now = time.time()
        for name in [n for n, h in self._targets.items() if not h.in_flight and not h.cooling(now)][:256]:
            del self._targets[name]

    def known(self, targets: Iterable[str]) -> None:
        """Make ``targets`` show in :meth:`states` before their first request (the configured routes)."""
        for target in targets:
            self.of(target)

    def failed(self, target: str, retry_after: float | None) -> bool:
        """Count a failure; True when the target now cools down (a ``retry-after``, or too many failures)."""
        h = self.of(target)
        now = time.time()
        if retry_after is not None and retry_after > 0:
            self._start(target, h, now + min(retry_after, COOLDOWN_CAP))
            return True
        failures = h.failures
        failures.append(now)
        while failures and failures[0] <= now - self._config.window:
            failures.popleft()
        if len(failures) >= self._config.failures:
            failures.clear()
            self._start(target, h, now + self._config.seconds)
            return True
        return False

    def cool(self, target: str, until: float) -> None:
        """A cooldown another replica started (no announcement back)."""
        h = self.of(target)
        if until > h.cooling_until and until > time.time():
            if not h.cooling(time.time()):
                h.cooldowns += 1
            h.cooling_until = until

    def _start(self, target: str, h: TargetHealth, until: float) -> None:
        if until <= h.cooling_until:
            return
        if not h.cooling(time.time()):
            h.cooldowns += 1
        h.cooling_until = until
        if self.announce is not None:
            self.announce(target, until)

    def states(self) -> list[TargetState]:
        now = time.time()
        return [
            TargetState(name, h.in_flight, h.cooldowns, h.cooling_until if h.cooling(now) else None)
            for name, h in self._targets.items()
        ]
