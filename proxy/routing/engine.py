"""Routing: which targets a request tries, in which order, how often, and what each attempt teaches.

:class:`Routing` is the runtime's (``rt.routing``). The pipeline asks :meth:`Routing.candidates` for the
targets a request may reach (None for a plain model name without ``fallbacks``: the pipeline's single
exchange, as cheap as before routing existed) and, when there are several or retries are configured,
hands :meth:`Routing.run` a function that makes one attempt. What follows a failed attempt is the rule
of :mod:`proxy.routing.policy`; the order is the route's strategy (:mod:`proxy.routing.strategies`),
minus the targets cooling down and those too small for the prompt.

Health (in flight, time to first byte, failures, cooldowns) is kept for the targets of routes and of
per-request fallbacks; a plain model name is not watched (and so never refused for cooling down).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from providers.errors import SwitchboardError

from ..router import Router, Target
from .contract import TargetState
from .health import Health
from .policy import Verdict, backoff, verdict
from .strategies import order
from .table import candidates, check_routes

if TYPE_CHECKING:
    from ..config import ServerConfig
    from ..outcome import Outcome
    from ..streaming import Reply
    from .shared import SharedCooldowns

__all__ = ["AllCoolingDown", "Routing"]

log = logging.getLogger("switchboard")

#: One attempt at one target; ``release``: no other attempt follows, the request may be freed.
Exchange = Callable[[Target, bool], Awaitable[None]]


class AllCoolingDown(SwitchboardError):
    status = 503
    type = "overloaded_error"
    code = "all_targets_cooling_down"


class Routing:
    """Implements :class:`proxy.routing.contract.RoutingView` (``states``) for metrics."""

    def __init__(self, config: ServerConfig, router: Router, config_path: Path) -> None:
        check_routes(config.routes, config.aliases, router.registry, config_path)
        self.routes = config.routes
        self._router = router
        self._retries = config.retries
        self._context_fallback = config.context_window_fallback
        self.health = Health(config.cooldown)
        self._rng = random.Random()  # noqa: S311 - load spreading and jitter, not secrets
        #: A plain model name goes through :meth:`run` only when it may be retried.
        self.retries_plain = config.retries.attempts > 1
        self._shared: SharedCooldowns | None = None
        if config.redis_url:
            from .shared import SharedCooldowns

            self._shared = SharedCooldowns(config.redis_url, self.health)
        self.health.known(t for r in config.routes.values() for t in r.targets)
        #: (route name, kind, path) → its candidates, for the router generation they were resolved in: a
        #: route's targets are resolved once, not on every request.
        self._resolved: dict[tuple[str, str, str], tuple[int, list[tuple[str, Target]]]] = {}

    async def start(self) -> None:
        if self._shared is not None:
            await self._shared.start()

    async def stop(self) -> None:
        if self._shared is not None:
            await self._shared.stop()

    @property
    def problem(self) -> str | None:
        return self._shared.problem if self._shared is not None else None

    def states(self) -> Sequence[TargetState]:
        return self.health.states()

    def candidates(
        self, requested: str, fallbacks: Sequence[str], kind: str, path: str
    ) -> list[tuple[str, Target]] | None:
        """The (name, target) pairs a request may reach; None: a plain model name without fallbacks."""
        if fallbacks:
            return candidates(self._router, self.routes, requested, fallbacks, kind, path)
        if requested not in self.routes:
            return None
        key, generation = (requested, kind, path), self._router.generation
        hit = self._resolved.get(key)
        if hit is None or hit[0] != generation:
            hit = self._resolved[key] = (generation, candidates(self._router, self.routes, requested, (), kind, path))
        return hit[1]

    async def run(
        self,
        requested: str,
        cands: Sequence[tuple[str, Target]],
        exchange: Exchange,
        reply: Reply,
        outcome: Outcome,
        input_tokens: int,
        max_output: int,
        *,
        watch: bool = True,
    ) -> None:
        """Try the targets until one answers; raises the last failure (or :class:`AllCoolingDown`).
        ``watch``: keep the targets' health (False for a plain model name being retried)."""
        targets = self._order(requested, cands, input_tokens, max_output, watch)
        attempts, health = self._retries.attempts, self.health
        last: SwitchboardError | None = None
        bigger_than = 0  # after a context-length error: only larger windows
        for index, target in enumerate(targets):
            tid = target.public_id
            if index and ((watch and health.of(tid).cooling(time.time())) or _window(target) <= bigger_than):
                continue
            tries = 0
            while True:
                tries += 1
                h = health.of(tid) if watch else None
                made = len(outcome.attempts)
                if h is not None:
                    h.in_flight += 1
                try:
                    await exchange(target, index == len(targets) - 1 and tries >= attempts)
                except SwitchboardError as exc:
                    if reply.started:
                        raise
                    attempt = outcome.attempts[-1] if len(outcome.attempts) > made else None
                    retry_after = attempt.retry_after if attempt is not None else None
                    found = verdict(exc, attempt.status if attempt is not None else 0, self._context_fallback)
                    if found is Verdict.ANSWER:
                        raise
                    last = exc
                    log.info("%s failed (%s, %s): %s", tid, exc.status, exc.code or exc.type, found.value)
                    if found is Verdict.BIGGER:
                        bigger_than = _window(target)
                        break
                    cooling = watch and health.failed(tid, retry_after if found is Verdict.RETRY else None)
                    if found is Verdict.NEXT or tries >= attempts:
                        break
                    if retry_after is not None and retry_after > self._retries.retry_after_cap:
                        break
                    if cooling and self._others(targets, index, bigger_than):
                        break
                    delay = backoff(self._retries, tries, retry_after, self._rng)
                    outcome.waited += delay
                    await asyncio.sleep(delay)
                    continue
                else:
                    attempt = outcome.attempts[-1] if len(outcome.attempts) > made else None
                    if h is not None and attempt is not None and attempt.first_byte is not None:
                        h.measured(attempt.first_byte - attempt.started)
                    return
                finally:
                    if h is not None:
                        h.in_flight -= 1
        if last is None:
            raise self._all_cooling(targets)
        raise last

    def _order(
        self, requested: str, cands: Sequence[tuple[str, Target]], input_tokens: int, max_output: int, watch: bool
    ) -> list[Target]:
        route = self.routes.get(requested)
        own = [t for name, t in cands if name == requested]
        targets = order(route, own, self.health, self._rng, input_tokens, max_output) if route is not None else own
        if len(own) < len(cands):
            targets += [t for name, t in cands if name != requested]
        if watch:
            now = time.time()
            ready = [t for t in targets if not self.health.of(t.public_id).cooling(now)]
            if not ready:
                raise self._all_cooling(targets)
            targets = ready
        if self._context_fallback and len(targets) > 1:
            fits = [t for t in targets if _window(t) >= input_tokens]
            if fits:
                targets = fits
        return targets

    def _others(self, targets: Sequence[Target], index: int, bigger_than: int) -> bool:
        now = time.time()
        return any(
            not self.health.of(t.public_id).cooling(now) and _window(t) > bigger_than for t in targets[index + 1 :]
        )

    def _all_cooling(self, targets: Sequence[Target]) -> AllCoolingDown:
        now = time.time()
        ends = [self.health.of(t.public_id).cooling_until for t in targets]
        wait = max(1, math.ceil(min(ends) - now)) if ends else 1
        names = ", ".join(t.public_id for t in targets)
        return AllCoolingDown(
            f"every target of this request is cooling down after failures ({names}); retry in {wait} s",
            headers={"retry-after": str(wait)},
        )


def _window(target: Target) -> int:
    """The target's context window in tokens (a model the catalog does not know: assumed large)."""
    return target.model.context_window if target.model is not None else 1 << 30
