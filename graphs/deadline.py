"""A request's total time budget, shared by every downstream await."""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, TypeVar

T = TypeVar("T")


class DeadlineExpired(TimeoutError):
    """The request's budget ran out before the awaited call finished."""


class Deadline:
    def __init__(self, budget_s: float, *, clock=time.monotonic) -> None:
        self._clock = clock
        self.total_s = budget_s
        self._expires_at = clock() + budget_s

    def remaining(self) -> float:
        return max(0.0, self._expires_at - self._clock())

    def expired(self) -> bool:
        return self.remaining() <= 0.0

    async def run(self, awaitable: Awaitable[T], *, cap_s: float | None = None) -> T:
        """Await `awaitable` with what is left of the budget (or `cap_s` if smaller)."""
        budget = self.remaining() if cap_s is None else min(cap_s, self.remaining())
        if budget <= 0:
            _close(awaitable)
            raise DeadlineExpired("no time left")
        try:
            return await asyncio.wait_for(awaitable, timeout=budget)
        except TimeoutError as exc:
            raise DeadlineExpired(f"did not finish within {budget:.3f}s") from exc


def _close(awaitable) -> None:
    close = getattr(awaitable, "close", None) or getattr(awaitable, "cancel", None)
    if close is not None:
        close()
