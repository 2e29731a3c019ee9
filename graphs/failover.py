"""Walk a failover chain until a model answers.

For each model in order: skip it without calling if its breaker is open; else call it with its
share of the time left (what is left divided by the models still to try, so a hung model costs its
share and the chain moves on; the last one gets all of it), retrying
retryable errors while the breaker stays closed and the deadline leaves time (tenacity); record
the outcome on the breaker. A failure the client caused stops the walk (the next model would
refuse the same input) and says nothing about the model. Any other failure moves on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, Mapping, Sequence, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_fixed

from graphs.breaker import BreakerState, CircuitBreaker, CircuitOpen
from graphs.deadline import Deadline

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    model: str
    error: BaseException

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


async def first_answer(
    models: Sequence[str],
    attempt: Callable[[str, Deadline], Awaitable[T]],
    deadline: Deadline,
    *,
    tail: int = 0,  # steps after the chain that need time too (the LLM-only answer)
    is_client_error: Callable[[BaseException], bool],
    is_retryable: Callable[[BaseException], bool] = lambda exc: False,
    breakers: Mapping[str, CircuitBreaker] | None = None,
    retry: RetryPolicy = RetryPolicy(retries=0),
) -> ChainResult[T]:
    failures: list[Failure] = []
    for i, name in enumerate(models):
        if deadline.expired():
            raise ChainExhausted(failures, list(models[i:]))
        breaker = (breakers or {}).get(name)
        if breaker is not None:
            try:
                breaker.acquire()
            except CircuitOpen as exc:
                failures.append(Failure(name, exc))
                continue
        share = Deadline(deadline.remaining() / (len(models) - i + tail))
        try:
            value = await _with_retries(name, attempt, share, breaker, retry, is_retryable, is_client_error)
        except asyncio.CancelledError:
            if breaker is not None:
                breaker.release()
            raise
        except Exception as exc:
            if is_client_error(exc):
                if breaker is not None:
                    breaker.release()
                raise
            failures.append(Failure(name, exc))
            continue
        if breaker is not None:
            breaker.record_success()
        return ChainResult(name, value, failures)
    raise ChainExhausted(failures, [])


async def _with_retries(name, attempt, deadline: Deadline, breaker: CircuitBreaker | None, policy: RetryPolicy,
                        is_retryable, is_client_error):
    def should_retry(exc: BaseException) -> bool:
        if isinstance(exc, asyncio.CancelledError):
            return False
        # Every failed attempt is the model's failure; count it before deciding.
        if not is_client_error(exc) and breaker is not None:
            breaker.record_failure()
        return (is_retryable(exc) and deadline.remaining() > policy.min_budget_s
                and (breaker is None or breaker.state is BreakerState.CLOSED))

    retrying = AsyncRetrying(stop=stop_after_attempt(policy.retries + 1), wait=wait_fixed(policy.backoff_s),
                             retry=retry_if_exception(should_retry), reraise=True)
    async for try_ in retrying:
        with try_:
            if breaker is not None and try_.retry_state.attempt_number > 1:
                breaker.acquire()  # a retry is a new call: the breaker must still allow it
            return await attempt(name, deadline)
