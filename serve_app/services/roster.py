"""The ingress' view of the roster: which model serves what, in which order, and calling them
through their failover chain (breakers, retries, injected faults, output validators)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from graphs.breaker import BreakerPolicy, BreakerState, CircuitBreaker, CircuitOpen
from graphs.deadline import Deadline, DeadlineExpired
from graphs.failover import ChainExhausted, RetryPolicy, first_answer
from graphs.faults import Fault, FaultBook, InjectedFault
from graphs.validators import corrupt, validate
from serve_app.config import Family, ModelSpec, SwitchboardConfig
from serve_app.errors import (DeadlineExceeded, InvalidRequest, ModelNotFound, ServiceUnavailable,
                              SwitchboardError)
from serve_app.model_client import ModelClient
from serve_app.services.context import RequestContext

# OpenAI's model names, mapped to the roster's default model of the family.
OPENAI_MODEL_FAMILIES: dict[str, Family] = {
    "whisper-1": "stt", "gpt-4o-transcribe": "stt", "gpt-4o-mini-transcribe": "stt",
    "tts-1": "tts", "tts-1-hd": "tts", "gpt-4o-mini-tts": "tts",
}
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
DEADLINE_SLACK_S = 0.05
FAMILY_ROUTE = {"llm": "text", "vision": "vision", "stt": "stt", "tts": "tts", "search": "search", "clone": "clone"}


def is_client_error(exc: BaseException) -> bool:
    """A failure the request caused: the next model would refuse the same input."""
    return isinstance(exc, SwitchboardError) and 400 <= exc.http_status < 500 and exc.http_status != 429


def is_retryable(exc: BaseException) -> bool:
    """Worth another try on the same model: a transient 5xx, a dead replica, an injected error.
    Not a timeout (the time is spent) and not an unusable output (it would come again)."""
    if isinstance(exc, InjectedFault):
        return True
    return isinstance(exc, SwitchboardError) and exc.retryable and not isinstance(exc, DeadlineExceeded)


class Roster:
    def __init__(self, config: SwitchboardConfig, clients: dict[str, ModelClient], *,
                 on_breaker_change: Callable[[str, BreakerState, BreakerState], None] | None = None) -> None:
        self.config = config
        self.specs = config.by_name()
        self.clients = clients
        breaker = config.resilience.breaker
        policy = BreakerPolicy(breaker.failure_threshold, breaker.window_s, breaker.cooldown_s)
        self.breakers = {name: CircuitBreaker(name, policy, on_change=on_breaker_change) for name in clients}
        retry = config.resilience.retry
        self.retry = RetryPolicy(retry.retries, retry.backoff_ms / 1000, retry.min_budget_ms / 1000)
        self.faults = FaultBook({name: Fault(**f.model_dump()) for name, f in config.faults.items()})

    def chain(self, family: Family, requested: str | None = None, *, param: str = "model") -> list[str]:
        """The failover chain of `family`'s route; a model the client named goes first."""
        members, _ = self.config.chain(FAMILY_ROUTE[family])
        if requested is None or requested == "auto" or OPENAI_MODEL_FAMILIES.get(requested) == family:
            return members
        spec = self.specs.get(requested)
        if spec is None:
            known = ", ".join(["auto", *members, *(k for k, f in OPENAI_MODEL_FAMILIES.items() if f == family)])
            raise ModelNotFound(f"model {requested!r} does not exist; for this endpoint use one of: {known}",
                                param=param)
        if spec.family != family:
            raise InvalidRequest(f"model {requested!r} is a {spec.family} model, not a {family} model", param=param)
        return [requested, *(m for m in members if m != requested)]

    def ends_in_llm_only(self, family: Family) -> bool:
        return self.config.chain(FAMILY_ROUTE[family])[1]

    def has(self, family: Family) -> bool:
        return bool(self.config.chain(FAMILY_ROUTE[family])[0])

    async def call(self, family: Family, models: list[str], method: str,
                   make_payload: Callable[[str, Deadline], Any], ctx: RequestContext, *, tail: int = 0
                   ) -> tuple[str, Any]:
        """Walk `models`; `make_payload(name, deadline)` builds each call with its share of the time.
        Records who answered and who failed in `ctx`; raises 503/504 naming every failure."""
        if not models:
            raise ServiceUnavailable(f"the roster has no {family} model")

        async def attempt(name: str, deadline: Deadline):
            client = self.clients[name]
            result = await deadline.run(self.faults.around(
                name, lambda: client.call(method, make_payload(name, deadline), deadline),
                lambda out, how: corrupt(family, out, how)))
            return validate(family, name, result)

        try:
            result = await first_answer(models, attempt, ctx.deadline, tail=tail, is_client_error=is_client_error,
                                        is_retryable=is_retryable, breakers=self.breakers, retry=self.retry)
        except ChainExhausted as exc:
            raise exhausted(family, exc, ctx) from None
        ctx.used(result.model, result.failures)
        return result.model, result.value

    def spec(self, name: str) -> ModelSpec:
        return self.specs[name]

    async def probe(self, name: str) -> float:
        """A health probe; a failed probe counts against the model's breaker."""
        async def run():
            await self.faults.before(name)
            return await self.clients[name].probe()

        try:
            return await asyncio.wait_for(run(), timeout=self.config.health.probe_timeout_s)
        except (SwitchboardError, InjectedFault, DeadlineExpired, TimeoutError):
            breaker = self.breakers[name]
            if breaker.state is BreakerState.CLOSED:
                breaker.record_failure()
            raise


def exhausted(family: str, exc: ChainExhausted, ctx: RequestContext) -> SwitchboardError:
    """The error for a chain with no answer: 504 if the request's deadline ran out, else 503;
    either way naming what failed."""
    ctx.failures.extend(exc.failures)
    if ctx.deadline.remaining() < DEADLINE_SLACK_S:  # the last model's share ended with the request's time
        return DeadlineExceeded(f"the request's deadline passed before a {family} model answered: {exc}")
    if exc.failures and all(isinstance(f.error, CircuitOpen) for f in exc.failures):
        return ServiceUnavailable(f"{family}: every model's circuit breaker is open: {exc}", code="circuit_open")
    return ServiceUnavailable(f"{family}: no model could answer: {exc}", code="all_models_failed")
