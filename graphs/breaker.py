"""A circuit breaker per model, written here because the asyncio-native library (purgatory) lets
every caller through while half-open, and we want exactly one probe.

closed --(N failures within the window)--> open --(cooldown)--> half_open
half_open --(the one probe succeeds)--> closed;  half_open --(it fails)--> open

Every admitted call holds a `Permit` from `acquire()` and ends it with exactly one of
`record_success`, `record_failure` or `release` (the call said nothing about the model). A permit
belongs to the state generation it was issued in; the generation changes on every state change and
on `reset()`. Outcomes of an earlier generation's permits change nothing: a call that started
before the breaker opened cannot close it, free the probe slot, or count against a recovered model.
Only the half-open probe's permit can close or re-open the breaker, and releasing it frees the slot
for the next caller. A permit's failure counts once.

Only failures the model caused count (5xx, timeouts, connection errors, failed probes); the caller
decides that. State changes go to `on_change(model, old, new)` (logs and metrics in the ingress), and
each counted failure to `on_failure(model)` (shared with the other ingress replicas). What the other
replicas learnt arrives through `force_open` and `reset`.
"""

from __future__ import annotations

import itertools
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


@dataclass(frozen=True)
class Permit:
    """Leave to call the model once, issued in state generation `generation`."""

    generation: int
    probe: bool
    serial: int  # tells two permits of one breaker apart


class CircuitBreaker:
    def __init__(self, model: str, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.model = model
        self.policy = policy
        self._clock = clock
        self._on_change = on_change
        self._on_failure = on_failure
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._failures: deque[tuple[float, int]] = deque()  # (when, permit serial) while closed
        self._opened_at = 0.0
        self._probe: Permit | None = None  # the half-open probe while it is out
        self._serials = itertools.count()

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._cooled_down():
            return BreakerState.HALF_OPEN  # what the next caller will find
        return self._state

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.policy.cooldown_s

    def acquire(self) -> Permit:
        """A permit for one call, or CircuitOpen. In half-open, only the first caller gets
        through (the probe) until its permit ends."""
        if self._state is BreakerState.OPEN:
            if not self._cooled_down():
                raise CircuitOpen(self.model, self.policy.cooldown_s - (self._clock() - self._opened_at))
            self._move(BreakerState.HALF_OPEN)
        if self._state is BreakerState.CLOSED:
            return Permit(self._generation, False, next(self._serials))
        if self._probe is not None:
            raise CircuitOpen(self.model, 0.0)
        self._probe = Permit(self._generation, True, next(self._serials))
        return self._probe

    def record_success(self, permit: Permit) -> None:
        """A success while closed changes nothing (failures in the window still count)."""
        if self._is_probe(permit):
            self._move(BreakerState.CLOSED)

    def record_failure(self, permit: Permit) -> None:
        now = self._clock()
        if self._is_probe(permit):
            self._open(now)
            return
        if self._state is not BreakerState.CLOSED or permit.generation != self._generation:
            return  # issued before the last state change: says nothing about the model as it is now
        if any(serial == permit.serial for _, serial in self._failures):
            return  # already counted
        self._failures.append((now, permit.serial))
        if self._on_failure is not None:
            self._on_failure(self.model)
        while now - self._failures[0][0] > self.policy.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.policy.failure_threshold:
            self._open(now)

    def release(self, permit: Permit) -> None:
        """The call ended without saying anything about the model (client error, cancelled)."""
        if self._is_probe(permit):
            self._probe = None

    def reset(self) -> None:
        """Close by hand (an operator who knows the model is back); calls in flight no longer count."""
        self._move(BreakerState.CLOSED)

    def force_open(self, opened_ago_s: float = 0.0) -> None:
        """Open as if it had opened `opened_ago_s` ago (another replica saw the model fail): the cooldown
        runs from then. An open breaker that opened earlier takes the later time; one cooling down
        from a later opening, or half-open with its probe out, is left alone."""
        opened_at = self._clock() - max(0.0, opened_ago_s)
        if self._state is BreakerState.OPEN:
            self._opened_at = max(self._opened_at, opened_at)
            return
        if self._state is BreakerState.HALF_OPEN and self._probe is not None:
            return  # its own probe decides
        self._opened_at = opened_at
        self._move(BreakerState.OPEN)

    @property
    def opened_ago_s(self) -> float | None:
        """Seconds since it opened, while open or half-open."""
        return None if self._state is BreakerState.CLOSED else self._clock() - self._opened_at

    def failures_in_window(self) -> int:
        now = self._clock()
        return sum(1 for t, _ in self._failures if now - t <= self.policy.window_s)

    def _is_probe(self, permit: Permit) -> bool:
        return self._probe is not None and permit == self._probe

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        """Every move starts a new generation: permits issued before it no longer count."""
        old, self._state = self._state, new
        self._generation += 1
        self._failures.clear()
        self._probe = None
        if old is not new and self._on_change is not None:
            self._on_change(self.model, old, new)
