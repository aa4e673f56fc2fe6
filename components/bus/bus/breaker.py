"""A circuit breaker per provider system: closed -> open after N consecutive failures -> half-open after a
cool-down (one trial call at a time) -> closed on success, open again on failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


class CircuitOpen(Exception):
    def __init__(self, provider: str, retry_after: float) -> None:
        super().__init__(f"circuit for {provider} is open; retry in {retry_after:.1f} s")
        self.provider = provider
        self.retry_after = retry_after


@dataclass
class Breaker:
    provider: str
    threshold: int
    reset_after: float
    clock: Callable[[], float]
    state: str = "closed"
    failures: int = 0
    opened_at: float = 0.0
    trial_in_flight: bool = False

    def before(self) -> None:
        """Raise CircuitOpen, or let the call go (marking the half-open trial)."""
        if self.state == "closed":
            return
        now = self.clock()
        if self.state == "open":
            if now - self.opened_at < self.reset_after:
                raise CircuitOpen(self.provider, self.reset_after - (now - self.opened_at))
            self.state = "half-open"
            self.trial_in_flight = False
        if self.trial_in_flight:  # half-open: exactly one trial at a time
            raise CircuitOpen(self.provider, 0.0)
        self.trial_in_flight = True

    def success(self) -> None:
        self.state, self.failures, self.trial_in_flight = "closed", 0, False

    def failure(self) -> None:
        self.failures += 1
        self.trial_in_flight = False
        if self.state == "half-open" or self.failures >= self.threshold:
            self.state, self.opened_at = "open", self.clock()


@dataclass
class Breakers:
    threshold: int = 5
    reset_after: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _by_provider: dict[str, Breaker] = field(default_factory=dict)

    def get(self, provider: str) -> Breaker:
        b = self._by_provider.get(provider)
        if b is None:
            b = self._by_provider[provider] = Breaker(provider, self.threshold, self.reset_after, self.clock)
        return b

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {p: {"state": b.state, "failures": b.failures} for p, b in self._by_provider.items()}
