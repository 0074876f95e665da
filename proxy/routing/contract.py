"""What routing shows of its state to others (metrics, the dashboard): one :class:`TargetState` per target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["RoutingView", "TargetState"]


@dataclass(frozen=True, slots=True)
class TargetState:
    #: ``provider/model`` (the Target's public id).
    target: str
    #: Requests in flight to it from this process.
    in_flight: int
    #: Cooldowns started for it since the process started (a counter).
    cooldowns: int
    #: Epoch seconds its current cooldown ends; None: not cooling down.
    cooling_until: float | None


class RoutingView(Protocol):
    def states(self) -> Sequence[TargetState]:
        """Every target routing has seen or been configured with; read at scrape time, not per request."""
        ...
