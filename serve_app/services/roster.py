"""The ingress' view of the roster: which model serves what, in which order, and calling them
through their failover chain (breakers, retries, injected faults, output validators)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, AsyncIterator, Callable

from graphs.blame import Attempt, Blame, blame, too_long
from graphs.breaker import BreakerPolicy, BreakerState, CircuitBreaker, CircuitOpen
from graphs.deadline import Deadline
from graphs.failover import ChainExhausted, ChainResult, RetryPolicy, TimePolicy, first_answer, settle
from graphs.faults import Fault, FaultBook, InjectedFault, RequestFacts
from graphs.validators import EmptyReading, corrupt, structured, validate
from vocabulary.chat_chunks import assemble, until_progress
from serve_app.flags.switches import Switches
from serve_app.model_client import ModelClient, ModelStream
from serve_app.request_log.record import short_error
from serve_app.services.context import RequestContext
from vocabulary.capabilities import NEED_PARAMS
from vocabulary.config import Family, ModelSpec, SwitchboardConfig
from vocabulary.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    ServiceUnavailable,
    SwitchboardError,
)
from vocabulary.routes import FAMILY_ROUTE, OPENAI_MODEL_FAMILIES

DEADLINE_SLACK_S = 0.05
# How fast the slowest engine of the CPU roster reads a prompt on a busy core (transformers, one
# thread: about 200 tokens a second, four characters a token, with a margin): the first token of a
# long prompt may take this much longer than the stall limit before the model counts as hung.
PROMPT_CHARS_PER_S = 500


def _prompt_chars(call: Any) -> int:
    return sum(len(m.get("content") or "") for m in getattr(call, "messages", ())
               if isinstance(m.get("content"), str))


def call_entry(model: str, attempt: int, breaker_state: str | None) -> dict[str, Any]:
    """One call of the request log's `calls`, before it is made."""
    return {"model": model, "attempt": attempt, "latency_ms": 0.0, "status": None, "error": None, "blame": None,
            "breaker_state": breaker_state, "tokens_in": None, "tokens_out": None, "output_length": None}


def output_facts(value: Any) -> dict[str, Any]:
    """Sizes of an answer, for the log: tokens when the model counted them, and the text's length."""
    if isinstance(value, OpenChat):  # a stream: its sizes are known when it ends (ChatService adds them)
        return {}
    if not isinstance(value, dict):
        return {}
    usage = value.get("usage") or {}
    text = value.get("text")
    if text is None and isinstance(value.get("choices"), list) and value["choices"]:
        text = (value["choices"][0].get("message") or {}).get("content")
    return {"tokens_in": usage.get("prompt_tokens"), "tokens_out": usage.get("completion_tokens"),
            "output_length": len(text) if isinstance(text, str) else None}


def is_retryable(exc: BaseException) -> bool:
    """Worth another try on the same model: a transient 5xx, a dead replica, an injected error.
    Not a timeout (the time is spent) and not an unusable output (it would come again)."""
    if isinstance(exc, InjectedFault):
        return True
    return isinstance(exc, SwitchboardError) and exc.retryable and not isinstance(exc, DeadlineExceeded)


class Roster:
    def __init__(self, config: SwitchboardConfig, clients: dict[str, ModelClient], *,
                 on_breaker_change: Callable[[str, BreakerState, BreakerState], None] | None = None,
                 on_breaker_failure: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.specs = config.by_name()
        self.clients = clients
        breaker = config.resilience.breaker
        policy = BreakerPolicy(breaker.failure_threshold, breaker.window_s, breaker.cooldown_s)
        self.breakers = {name: CircuitBreaker(name, policy, on_change=on_breaker_change, on_failure=on_breaker_failure)
                         for name in clients}
        retry = config.resilience.retry
        self.retry = RetryPolicy(retry.retries, retry.backoff_ms / 1000, retry.min_budget_ms / 1000)
        self.timing = TimePolicy(tail_reserve_s=config.resilience.llm_only_reserve_ms / 1000)
        self.stall_s = {name: spec.stall_timeout_s() for name, spec in self.specs.items()}
        self.faults = FaultBook({name: Fault(**f.model_dump()) for name, f in config.faults.items()})
        self.caps = {name: spec.caps() for name, spec in self.specs.items()}
        self.windows = {name: caps.context_window for name, caps in self.caps.items()}
        self.order_chain: Callable[[Family, list[str], RequestContext], list[str]] | None = None
        self.switches = Switches()  # the ingress replaces it when a flags file is configured

    def chain(self, family: Family, requested: str | None = None, *, param: str = "model",
              ctx: RequestContext | None = None) -> list[str]:
        """The failover chain of `family`'s route; a model the client named goes first. The route's
        own chain (nobody named a model) is ordered for the request by `order_chain` when set (the
        model-choice heads), given the request's context."""
        route = FAMILY_ROUTE[family]
        members, _ = self.config.chain(route)
        if self.switches.on:
            members = [m for m in self.switches.route_order(route, members) if self.switches.model_on(m)]
        if requested is None or requested == "auto" or OPENAI_MODEL_FAMILIES.get(requested) == family:
            if ctx is not None and self.order_chain is not None and len(members) > 1:
                members = self.order_chain(family, members, ctx)
            canary = self.switches.canary(route, ctx.targeting_key or ctx.request_id) if ctx is not None else None
            if canary is not None:
                ctx.variant = canary.as_dict()
                if canary.model in members:
                    members = [canary.model, *(m for m in members if m != canary.model)]
            return members
        spec = self.specs.get(requested)
        if spec is None:
            known = ", ".join(["auto", *members, *(k for k, f in OPENAI_MODEL_FAMILIES.items() if f == family)])
            raise ModelNotFound(f"model {requested!r} does not exist; for this endpoint use one of: {known}",
                                param=param)
        if spec.family != family:
            raise InvalidRequest(f"model {requested!r} is a {spec.family} model, not a {family} model", param=param)
        if not self.switches.model_on(requested):  # turned off by its flag: the route's other models answer
            if ctx is not None:
                ctx.reasons.append(f"model {requested} is turned off")
            return members
        return [requested, *(m for m in members if m != requested)]

    def capable(self, chain: list[str], needs: list[str]) -> list[str]:
        """The chain without the LLMs that cannot honour what the request needs. When none of the
        chain can, the roster's LLMs that can; when none can, 400 unsupported_parameter."""
        if not needs:
            return chain

        def fits(name: str) -> bool:
            return all(self.caps[name].has(need) for need in needs)

        kept = [m for m in chain if fits(m)] or [m.name for m in self.config.family("llm") if fits(m.name)]
        if kept:
            return kept
        params = [NEED_PARAMS[n] for n in needs]
        lacking = [p for n, p in zip(needs, params) if not any(c.has(n) for c in self.caps.values())] or params
        raise InvalidRequest(f"no model of this roster can honour {' together with '.join(lacking)}",
                             param=lacking[0], code="unsupported_parameter")

    def ends_in_llm_only(self, family: Family) -> bool:
        return self.config.chain(FAMILY_ROUTE[family])[1]

    def has(self, family: Family) -> bool:
        return bool(self.config.chain(FAMILY_ROUTE[family])[0])

    async def walk(self, models: list[str], attempt: Callable[[str, Attempt], Any], ctx: RequestContext, *,
                   tail: int = 0, keep_permit: bool = False) -> ChainResult:
        """`first_answer` over the roster's breakers, retries and time policy. Every call it makes,
        and every model it skips (breaker open), is recorded in `ctx.calls` for the request log."""
        tries: dict[str, int] = {}

        async def recorded(name: str, given: Attempt):
            tries[name] = tries.get(name, 0) + 1
            breaker = self.breakers.get(name)
            entry = call_entry(name, tries[name], breaker.state.value if breaker is not None else None)
            started = time.perf_counter()
            try:
                value = await attempt(name, given)
            except asyncio.CancelledError:
                entry.update(status="cancelled", blame=Blame.NONE.value)
                raise
            except Exception as exc:
                entry.update(status="error", error=short_error(exc), blame=blame(exc, given).value)
                raise
            else:
                entry.update(status="ok", **output_facts(value))
            finally:
                entry["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
                ctx.calls.append(entry)
            return value

        failures: list = []
        try:
            result = await first_answer(models, recorded, ctx.deadline, tail=tail, is_retryable=is_retryable,
                                        breakers=self.breakers, retry=self.retry, timing=self.timing,
                                        stall_s=self.stall_s, keep_permit=keep_permit, doubted=ctx.doubted(models))
            failures = result.failures
            return result
        except ChainExhausted as exc:
            failures = exc.failures
            raise
        finally:
            ctx.calls.extend({**call_entry(f.model, 0, BreakerState.OPEN.value), "status": "skipped",
                              "error": short_error(f.error), "blame": Blame.NONE.value}
                             for f in failures if f.skipped)

    async def call(self, family: Family, models: list[str], method: str,
                   make_payload: Callable[[str, Deadline], Any], ctx: RequestContext, *, tail: int = 0
                   ) -> tuple[str, Any]:
        """Walk `models`; `make_payload(name, deadline)` builds each call with the time it is given.
        Records who answered and who failed in `ctx`; raises 503/504 naming every failure. LLM calls
        stream internally (`chat_stream`), whatever `method` says: see `_chat_attempt`."""
        if not models:
            raise ServiceUnavailable(f"the roster has no {family} model")
        empty: list[tuple[str, Any]] = []  # vision: an empty reading, kept while the next engine tries

        async def attempt(name: str, given: Attempt):
            if family == "llm":
                return await self._chat_attempt(name, make_payload, given, ctx.facts)
            budget = Deadline(min(given.share.remaining(), given.stall_s))
            client = self.clients[name]
            result = await given.first(self.faults.around(
                name, lambda: client.call(method, make_payload(name, budget)),
                lambda out, how: corrupt(family, out, how), ctx.facts))
            result = validate(family, name, result)
            if family == "vision" and not result["text"].strip() and name != models[-1]:
                empty.append((name, result))
                raise EmptyReading(name, "read no text; the next engine tries")
            return result

        try:
            result = await self.walk(models, attempt, ctx, tail=tail)
        except ChainExhausted as exc:
            if empty:  # nobody read more than nothing: the image may really be blank
                name, value = empty[0]
                ctx.used(name, [f for f in exc.failures if f.model != name])
                return name, value
            raise exhausted(family, exc, ctx, self.windows) from None
        ctx.used(result.model, result.failures)
        return result.model, result.value

    async def open_chat(self, name: str, call: Any, given: Attempt,
                        facts: RequestFacts | None = None) -> "OpenChat":
        """Start a chat stream and read it up to its first sign of progress, within the share. Before
        the first token the engine reads the prompt: a long prompt is slow, not hung, so the stall
        limit for the first token grows with it. `facts` decide whether a conditional fault fires."""
        await given.first(self.faults.before(name, facts))
        stream = await self.clients[name].stream("chat_stream", call)
        chunks = self.faults.stream(name, stream, facts)
        reading = dataclasses.replace(given, stall_s=given.stall_s + _prompt_chars(call) / PROMPT_CHARS_PER_S)
        try:
            first = await reading.first(until_progress(chunks))
        except BaseException:
            stream.cancel()
            raise
        return OpenChat(name, stream, chunks, first, given)

    async def _chat_attempt(self, name: str, make_payload: Callable[[str, Deadline], Any],
                            given: Attempt, facts: RequestFacts | None = None) -> dict[str, Any]:
        """A whole chat answer, streamed: the share bounds the first token; after it, only a stall
        or the request's own deadline cut a model that keeps producing tokens."""
        call = make_payload(name, given.request)
        opened = await self.open_chat(name, call, given, facts)
        read = list(opened.first)
        try:
            async for chunk in opened.rest():
                read.append(chunk)
        finally:
            opened.stream.cancel()
        result = assemble(read, name)
        fault = self.faults.get(name, facts)
        if fault is not None and fault.corrupt:
            result = corrupt("llm", result, fault.corrupt)
        result = validate("llm", name, result)
        schema, tools = call.json_schema(), call.tools if call.tool_choice != "none" else None
        if schema is None and not tools:
            return result
        return await asyncio.to_thread(structured, name, result, schema, tools, call.stop)

    def spec(self, name: str) -> ModelSpec:
        return self.specs[name]

    async def probe(self, name: str) -> float:
        """A health probe; a probe failure that is the model's own counts against its breaker."""
        async def run():
            await self.faults.before(name)
            return await self.clients[name].probe()

        breaker = self.breakers[name]
        permit = breaker.acquire() if breaker.state is BreakerState.CLOSED else None
        try:
            latency = await Deadline(self.config.health.probe_timeout_s).run(run())
        except BaseException as exc:
            settle(breaker, permit, Blame.NONE if isinstance(exc, asyncio.CancelledError) else blame(exc))
            raise
        settle(breaker, permit, Blame.NONE)
        return latency


class OpenChat:
    """A chat stream that has shown progress: the chunks read so far, and the rest, each within the
    stall limit and the request's deadline."""

    def __init__(self, model: str, stream: ModelStream, chunks: AsyncIterator, first: list, given: Attempt) -> None:
        self.model = model
        self.stream = stream
        self._chunks = chunks
        self.first = first
        self.attempt = given

    async def rest(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                chunk = await self.attempt.next(anext(self._chunks))
            except StopAsyncIteration:
                return
            yield chunk

    def cancel(self) -> None:
        self.stream.cancel()


def exhausted(family: str, exc: ChainExhausted, ctx: RequestContext,
              windows: dict[str, int | None] | None = None) -> SwitchboardError:
    """The error for a chain with no answer: 504 if the request's deadline ran out, else 503;
    either way naming what failed. A prompt too long for every model that tried is the client's
    400 context_length_exceeded, naming the largest window of those models."""
    ctx.failures.extend(exc.failures)
    refusals = [f for f in exc.failures if too_long(f.error)]
    widest = max(((windows or {}).get(f.model) or 0 for f in refusals), default=0)
    # The client's 400 only when no model that might have taken the prompt failed otherwise: a model
    # with a wider (known) window that broke is a 503, so that nobody shortens a prompt that fits.
    wider_broke = any(not too_long(f.error) and ((windows or {}).get(f.model) or 0) > widest for f in exc.failures)
    if refusals and not wider_broke:
        sized = [(windows or {}).get(f.model) or 0 for f in refusals]
        widest = max(range(len(refusals)), key=lambda i: sized[i])
        first = refusals[0].error
        if not sized[widest]:
            return first
        return InvalidRequest(
            f"The request does not fit the largest context window of the models that could answer it: "
            f"{sized[widest]} tokens ({refusals[widest].model}). {first.message}",
            param=first.param or "messages", code="context_length_exceeded")
    if ctx.deadline.remaining() < DEADLINE_SLACK_S:  # the last model's share ended with the request's time
        return DeadlineExceeded(f"the request's deadline passed before a {family} model answered: {exc}")
    if exc.failures and all(isinstance(f.error, CircuitOpen) for f in exc.failures):
        return ServiceUnavailable(f"{family}: every model's circuit breaker is open: {exc}", code="circuit_open")
    if any(isinstance(f.error, Overloaded) for f in exc.failures) and all(
            isinstance(f.error, (Overloaded, CircuitOpen)) for f in exc.failures):
        return Overloaded(f"{family}: every model is at its queue bound or its breaker is open: {exc}")
    return ServiceUnavailable(f"{family}: no model could answer: {exc}", code="all_models_failed")
