"""A circuit breaker per model, written here because the asyncio-native library (purgatory) lets
every caller through while half-open, and we want exactly one probe.

closed --(N failures within the window)--> open --(cooldown)--> half_open
half_open --(the one probe succeeds)--> closed;  half_open --(it fails)--> open

Only failures the model caused count (5xx, timeouts, connection errors, failed probes); the caller
decides that. State changes go to `on_change(model, old, new)` (logs and metrics in the ingress).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Callable


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Exception):
    """The model is skipped without being called."""

    def __init__(self, model: str, retry_in_s: float) -> None:
        super().__init__(f"circuit open, next probe in {retry_in_s:.1f}s")
        self.model = model
        self.retry_in_s = retry_in_s
        self.message = str(self)


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 3
    window_s: float = 60.0
    cooldown_s: float = 30.0


class CircuitBreaker:
    def __init__(self, model: str, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, BreakerState, BreakerState], None] | None = None) -> None:
        self.model = model
        self.policy = policy
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._probe_out = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._cooled_down():
            return BreakerState.HALF_OPEN  # what the next caller will find
        return self._state

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.policy.cooldown_s

    def acquire(self) -> None:
        """Raise CircuitOpen unless this call may go to the model. In half-open, only the first
        caller gets through (the probe); it must end with record_success/failure or release."""
        if self._state is BreakerState.OPEN:
            if not self._cooled_down():
                raise CircuitOpen(self.model, self.policy.cooldown_s - (self._clock() - self._opened_at))
            self._move(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN:
            if self._probe_out:
                raise CircuitOpen(self.model, 0.0)
            self._probe_out = True

    def record_success(self) -> None:
        self._probe_out = False
        if self._state is not BreakerState.CLOSED:
            self._failures.clear()
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        now = self._clock()
        self._probe_out = False
        if self._state is BreakerState.HALF_OPEN:
            self._open(now)
            return
        if self._state is BreakerState.OPEN:
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.policy.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.policy.failure_threshold:
            self._open(now)

    def reset(self) -> None:
        """Close by hand (an operator who knows the model is back)."""
        self._probe_out = False
        self._failures.clear()
        self._move(BreakerState.CLOSED)

    def failures_in_window(self) -> int:
        now = self._clock()
        return sum(1 for t in self._failures if now - t <= self.policy.window_s)

    def release(self) -> None:
        """The call ended without saying anything about the model (client error, cancelled)."""
        self._probe_out = False

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._failures.clear()
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if old is not new and self._on_change is not None:
            self._on_change(self.model, old, new)
