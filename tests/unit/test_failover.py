import pytest

from graphs.deadline import Deadline
from graphs.failover import ChainExhausted, first_answer


class ClientError(Exception):
    pass


def is_client(exc):
    return isinstance(exc, ClientError)


def models(**behaviour):
    called = []

    async def attempt(name, deadline):
        called.append(name)
        outcome = behaviour[name]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return attempt, called


async def test_first_model_answers():
    attempt, called = models(a="A", b="B")
    result = await first_answer(["a", "b"], attempt, Deadline(5), is_client_error=is_client)
    assert (result.model, result.value, result.degraded, called) == ("a", "A", False, ["a"])


async def test_failure_moves_on_and_is_recorded():
    attempt, called = models(a=RuntimeError("down"), b="B")
    result = await first_answer(["a", "b"], attempt, Deadline(5), is_client_error=is_client)
    assert result.model == "b" and result.degraded
    assert [f.describe() for f in result.failures] == ["a: down"]


async def test_client_error_stops_the_walk():
    attempt, called = models(a=ClientError("bad input"), b="B")
    with pytest.raises(ClientError):
        await first_answer(["a", "b"], attempt, Deadline(5), is_client_error=is_client)
    assert called == ["a"]


async def test_all_fail_names_every_failure():
    attempt, _ = models(a=RuntimeError("x"), b=RuntimeError("y"))
    with pytest.raises(ChainExhausted) as info:
        await first_answer(["a", "b"], attempt, Deadline(5), is_client_error=is_client)
    assert str(info.value) == "a: x; b: y"


async def test_no_time_left_skips_the_rest():
    attempt, called = models(a="A")
    with pytest.raises(ChainExhausted) as info:
        await first_answer(["a"], attempt, Deadline(0), is_client_error=is_client)
    assert called == [] and info.value.skipped == ["a"]


async def test_open_breaker_skips_without_calling_and_counts_failures():
    from graphs.breaker import BreakerPolicy, CircuitBreaker

    breakers = {"a": CircuitBreaker("a", BreakerPolicy(failure_threshold=3)), "b": CircuitBreaker("b", BreakerPolicy())}
    attempt, called = models(a=RuntimeError("down"), b="B")
    from graphs.failover import RetryPolicy

    for _ in range(2):  # 1 retry each: failures 2, then 3 -> open
        await first_answer(["a", "b"], attempt, Deadline(5), is_client_error=is_client, breakers=breakers,
                           is_retryable=lambda e: True, retry=RetryPolicy(retries=1, backoff_s=0))
    assert called.count("a") == 3 and breakers["a"].state.value == "open"
    called.clear()
    result = await first_answer(["a", "b"], attempt, Deadline(5), is_client_error=is_client, breakers=breakers)
    assert called == ["b"] and result.failures[0].skipped


async def test_client_errors_do_not_count_against_the_breaker():
    from graphs.breaker import BreakerPolicy, CircuitBreaker

    breaker = CircuitBreaker("a", BreakerPolicy(failure_threshold=1))
    attempt, _ = models(a=ClientError("bad"))
    with pytest.raises(ClientError):
        await first_answer(["a"], attempt, Deadline(5), is_client_error=is_client, breakers={"a": breaker})
    assert breaker.state.value == "closed"


async def test_a_hung_model_costs_its_share_then_the_chain_moves_on():
    import asyncio

    budgets = {}

    async def attempt(name, deadline):
        budgets[name] = deadline.remaining()
        if name == "hung":
            await deadline.run(asyncio.Event().wait())
        return name

    result = await first_answer(["hung", "ok"], attempt, Deadline(1.0), is_client_error=is_client, tail=0)
    assert result.model == "ok" and [f.model for f in result.failures] == ["hung"]
    assert 0.45 < budgets["hung"] <= 0.5  # half of the budget: two models to try
    assert budgets["ok"] <= 0.5 + 0.05  # what was left


async def test_tail_keeps_time_for_the_llm_only_answer():
    budgets = {}

    async def attempt(name, deadline):
        budgets[name] = deadline.remaining()
        return name

    await first_answer(["only"], attempt, Deadline(1.0), is_client_error=is_client, tail=1)
    assert 0.45 < budgets["only"] <= 0.5
