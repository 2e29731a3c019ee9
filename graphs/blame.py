"""Who a failure is blamed on, decided once, and the time an attempt on one model is given.

- CLIENT: the request itself (a 4xx): the walk stops; the model is not blamed.
- DEADLINE: the request's own deadline, or a share of it shorter than the model's stall limit,
  ran out: not the model's fault (a client that asks for 300 ms must not open breakers).
- PLATFORM: a limit of the platform or a bug of ours (an exception raised outside the model call):
  never counted; logged with its traceback.
- MODEL: the model's own failure: an error it raised, an unusable output, or nothing produced for
  its whole stall limit (hung). Only these count on its breaker.
- NONE: nothing to say about the model (skipped by an open breaker, cancelled, shed because its queue
  is at its bound, a prompt too long for its context window, or an empty reading where another engine
  may read more): the chain moves on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum
from typing import Awaitable, TypeVar

from graphs.breaker import CircuitOpen
from graphs.deadline import Deadline, DeadlineExpired, _close
from graphs.faults import InjectedFault
from graphs.validators import EmptyReading, InvalidOutput, UnfitOutput
from vocabulary.errors import DeadlineExceeded, Overloaded, PlatformError, SwitchboardError

T = TypeVar("T")


class Blame(str, Enum):
    CLIENT = "client"
    DEADLINE = "deadline"
    PLATFORM = "platform"
    MODEL = "model"
    NONE = "none"


class Stalled(DeadlineExpired):
    """The model produced nothing for its whole stall limit: it is hung."""


@dataclass(frozen=True)
class Attempt:
    """The time one model is given: `share` bounds its first answer (first token for an LLM),
    `request` is the request's own deadline, `stall_s` how long it may produce nothing."""

    share: Deadline
    request: Deadline
    stall_s: float

    async def first(self, awaitable: Awaitable[T]) -> T:
        """The first answer (or first chunk), within the share."""
        return await _within(awaitable, self.share.remaining(), self.stall_s)

    async def next(self, awaitable: Awaitable[T]) -> T:
        """A later chunk: the stall limit, and the request's own deadline."""
        return await _within(awaitable, self.request.remaining(), self.stall_s)


async def _within(awaitable: Awaitable[T], budget_s: float, stall_s: float) -> T:
    stalls = stall_s <= budget_s
    limit = stall_s if stalls else budget_s
    if limit <= 0:
        _close(awaitable)
        raise DeadlineExpired("no time left")
    try:
        return await asyncio.wait_for(awaitable, timeout=limit)
    except TimeoutError as exc:
        if stalls:
            raise Stalled(f"produced nothing for {stall_s:.1f}s: hung") from exc
        raise DeadlineExpired(f"did not finish within {limit:.3f}s") from exc


def is_client_error(exc: BaseException) -> bool:
    """A failure the request caused: the next model would refuse the same input."""
    return isinstance(exc, SwitchboardError) and 400 <= exc.http_status < 500 and exc.http_status != 429


def too_long(exc: BaseException) -> bool:
    """The prompt (and the tokens asked for) do not fit the model's context window."""
    return getattr(exc, "code", None) == "context_length_exceeded"


def blame(exc: BaseException, attempt: Attempt | None = None) -> Blame:
    if isinstance(exc, (CircuitOpen, asyncio.CancelledError, EmptyReading, UnfitOutput, Overloaded)):
        return Blame.NONE
    if isinstance(exc, Stalled):
        return Blame.MODEL
    if too_long(exc):  # for this model's window: the next model of the chain may take it
        return Blame.NONE
    if is_client_error(exc):
        return Blame.CLIENT
    if isinstance(exc, (DeadlineExpired, DeadlineExceeded)):
        return Blame.DEADLINE
    if isinstance(exc, PlatformError):
        return Blame.PLATFORM
    if isinstance(exc, (SwitchboardError, InjectedFault, InvalidOutput)):
        return Blame.MODEL
    return Blame.PLATFORM  # raised by our own code around the call, not by the model
