"""Walk a failover chain until a model answers.

For each model in order: skip it without calling if its breaker is open; else call it holding a
breaker permit, with an `Attempt`: its share of the time for the first answer (or first token),
the request's own deadline, and the stall limit. The share is what is left (less a bounded reserve
for the LLM-only step that may end the chain) divided by the models still to try whose breakers
are not open; the last one gets the rest. Retryable failures of the model are retried while the
breaker stays closed and time is left.

Every failure is blamed once (graphs/blame.py): only the model's own failures count on its
breaker; a client error stops the walk (the next model would refuse the same input); the
request's own deadline stops it too; a platform limit or a bug of ours moves on without counting.
A model the caller says is `doubted` for this request (the choice heads predicted it fails, or
exploration put it first) is tried once, without retries, and its failure is not counted either: a
predicted failure on one kind of request is no news that the model is down for everyone.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Collection, Generic, Mapping, Sequence, TypeVar

from graphs.blame import Attempt, Blame, blame
from graphs.breaker import BreakerState, CircuitBreaker, CircuitOpen, Permit
from graphs.deadline import Deadline

T = TypeVar("T")
logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


@dataclass(frozen=True)
class Failure:
    model: str
    error: BaseException
    blame: Blame = Blame.MODEL

    @property
    def skipped(self) -> bool:
        return isinstance(self.error, CircuitOpen)

    def describe(self) -> str:
        message = getattr(self.error, "message", None) or str(self.error) or type(self.error).__name__
        return f"{self.model}: {message}"


@dataclass(frozen=True)
class ChainResult(Generic[T]):
    model: str
    value: T
    failures: list[Failure] = field(default_factory=list)
    # Set when the outcome was left to the caller (a stream goes on after its first chunk).
    breaker: CircuitBreaker | None = None
    permit: Permit | None = None

    @property
    def degraded(self) -> bool:
        return bool(self.failures)


class ChainExhausted(Exception):
    """Every model of the chain failed, was skipped, or there was no time left to try it."""

    def __init__(self, failures: list[Failure], skipped: list[str]) -> None:
        self.failures = failures
        self.skipped = skipped
        parts = [f.describe() for f in failures] + [f"{name}: not tried, no time left" for name in skipped]
        super().__init__("; ".join(parts) or "no model to try")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 1
    backoff_s: float = 0.05
    min_budget_s: float = 0.2  # do not start a retry with less time than this left


@dataclass(frozen=True)
class TimePolicy:
    stall_s: float = 10.0  # a model that produces nothing for this long is hung
    tail_reserve_s: float = 5.0  # at most this is kept back for an LLM-only step after the chain

    def reserve(self, deadline: Deadline, tail: int) -> float:
        return min(deadline.remaining() / 2, self.tail_reserve_s) if tail else 0.0


async def first_answer(
    models: Sequence[str],
    attempt: Callable[[str, Attempt], Awaitable[T]],
    deadline: Deadline,
    *,
    tail: int = 0,  # steps after the chain that need time too (the LLM-only answer)
    is_retryable: Callable[[BaseException], bool] = lambda exc: False,
    breakers: Mapping[str, CircuitBreaker] | None = None,
    retry: RetryPolicy = RetryPolicy(retries=0),
    timing: TimePolicy = TimePolicy(),
    stall_s: Mapping[str, float] | None = None,  # per-model stall limits over timing.stall_s
    keep_permit: bool = False,  # leave the answering call's outcome to the caller (streams)
    doubted: Collection[str] = (),  # models predicted to fail this request: no retries, failures not counted
) -> ChainResult[T]:
    breakers = breakers or {}
    failures: list[Failure] = []
    for i, name in enumerate(models):
        if deadline.expired():
            raise ChainExhausted(failures, list(models[i:]))
        breaker = breakers.get(name)
        permit = None
        if breaker is not None:
            try:
                permit = breaker.acquire()
            except CircuitOpen as exc:
                failures.append(Failure(name, exc, Blame.NONE))
                continue
        live = 1 + sum(1 for m in models[i + 1:] if _may_call(breakers.get(m)))
        share = Deadline(max(0.0, deadline.remaining() - timing.reserve(deadline, tail)) / live)
        this = Attempt(share, deadline, (stall_s or {}).get(name, timing.stall_s))
        try:
            value, permit = await _with_retries(name, attempt, this, breaker, permit,
                                                RetryPolicy(retries=0) if name in doubted else retry, is_retryable,
                                                counted=name not in doubted)
        except asyncio.CancelledError:
            raise
        except CircuitOpen as exc:  # a retry found the breaker opened meanwhile
            failures.append(Failure(name, exc, Blame.NONE))
            continue
        except Exception as exc:
            who = blame(exc, this)
            if who is Blame.CLIENT:
                raise
            failures.append(Failure(name, exc, who))
            if who is Blame.PLATFORM:
                logger.error("platform failure, not counted against the model", exc_info=exc,
                             extra={"model": name, "error": f"{type(exc).__name__}: {exc}"[:500]})
            if who is Blame.DEADLINE and deadline.expired():
                raise ChainExhausted(failures, list(models[i + 1:])) from None
            continue
        if breaker is not None and not keep_permit:
            breaker.record_success(permit)
        return ChainResult(name, value, failures, breaker if keep_permit else None, permit if keep_permit else None)
    raise ChainExhausted(failures, [])


def _may_call(breaker: CircuitBreaker | None) -> bool:
    return breaker is None or breaker.state is not BreakerState.OPEN


def settle(breaker: CircuitBreaker | None, permit: Permit | None, who: Blame, *, counted: bool = True) -> None:
    """Tell the breaker how a call it admitted ended: only the model's own failure counts, and not
    when it was predicted (`counted` False: the model was doubted for this request)."""
    if breaker is None or permit is None:
        return
    if who is Blame.MODEL and counted:
        breaker.record_failure(permit)
    else:
        breaker.release(permit)


async def _with_retries(name, attempt, this: Attempt, breaker: CircuitBreaker | None, permit: Permit | None,
                        policy: RetryPolicy, is_retryable, *, counted: bool = True) -> tuple[object, Permit | None]:
    """One model, with retries of its retryable failures; every try holds its own permit and
    settles it, except the one that answers (the caller settles that)."""
    held = [permit]

    def should_retry(exc: BaseException) -> bool:
        return (blame(exc, this) is Blame.MODEL and is_retryable(exc)
                and this.request.remaining() > policy.min_budget_s
                and (breaker is None or breaker.state is BreakerState.CLOSED))

    # A plain loop, not tenacity's AsyncRetrying: its machinery cost about 2 % of the ingress' CPU on every
    # call, nearly all of which answer at the first try.
    for number in range(1, policy.retries + 2):
        if number > 1:
            await asyncio.sleep(policy.backoff_s)
            if breaker is not None:
                held[0] = breaker.acquire()  # a retry is a new call: the breaker must still allow it
        try:
            return await attempt(name, this), held[0]
        except BaseException as exc:
            who = Blame.NONE if isinstance(exc, (asyncio.CancelledError, CircuitOpen)) else blame(exc, this)
            settle(breaker, held[0], who, counted=counted)
            if number > policy.retries or not isinstance(exc, Exception) or not should_retry(exc):
                raise
    raise AssertionError("unreachable: the last try returns or raises")
