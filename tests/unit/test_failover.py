import asyncio

import pytest

from graphs.blame import Attempt, Blame, Stalled, blame
from graphs.breaker import BreakerPolicy, CircuitBreaker
from graphs.deadline import Deadline, DeadlineExpired
from graphs.failover import ChainExhausted, RetryPolicy, TimePolicy, first_answer
from vocabulary.errors import DeadlineExceeded, InvalidRequest, ModelError, PlatformError


def models(**behaviour):
    called = []

    async def attempt(name, given):
        called.append(name)
        outcome = behaviour[name]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt, called


def breakers(*names, threshold=1):
    return {n: CircuitBreaker(n, BreakerPolicy(failure_threshold=threshold)) for n in names}


async def test_first_model_answers():
    attempt, called = models(a="A", b="B")
    result = await first_answer(["a", "b"], attempt, Deadline(5))
    assert (result.model, result.value, result.degraded, called) == ("a", "A", False, ["a"])


async def test_failure_moves_on_and_is_recorded():
    attempt, called = models(a=ModelError("down"), b="B")
    result = await first_answer(["a", "b"], attempt, Deadline(5))
    assert result.model == "b" and result.degraded
    assert [f.describe() for f in result.failures] == ["a: down"]


async def test_client_error_stops_the_walk_and_does_not_count():
    attempt, called = models(a=InvalidRequest("bad input"), b="B")
    bs = breakers("a", "b")
    with pytest.raises(InvalidRequest):
        await first_answer(["a", "b"], attempt, Deadline(5), breakers=bs)
    assert called == ["a"] and bs["a"].state.value == "closed"


async def test_all_fail_names_every_failure():
    attempt, _ = models(a=ModelError("x"), b=ModelError("y"))
    with pytest.raises(ChainExhausted) as info:
        await first_answer(["a", "b"], attempt, Deadline(5))
    assert str(info.value) == "a: x; b: y"


async def test_no_time_left_skips_the_rest():
    attempt, called = models(a="A")
    with pytest.raises(ChainExhausted) as info:
        await first_answer(["a"], attempt, Deadline(0))
    assert called == [] and info.value.skipped == ["a"]


async def test_open_breaker_skips_without_calling_and_counts_failures():
    bs = {"a": CircuitBreaker("a", BreakerPolicy(failure_threshold=3)), "b": CircuitBreaker("b", BreakerPolicy())}
    attempt, called = models(a=ModelError("down"), b="B")
    for _ in range(2):  # 1 retry each: failures 2, then 3 -> open
        await first_answer(["a", "b"], attempt, Deadline(5), breakers=bs, is_retryable=lambda e: True,
                           retry=RetryPolicy(retries=1, backoff_s=0))
    assert called.count("a") == 3 and bs["a"].state.value == "open"
    called.clear()
    result = await first_answer(["a", "b"], attempt, Deadline(5), breakers=bs)
    assert called == ["b"] and result.failures[0].skipped


async def test_a_doubted_model_is_tried_once_and_its_failure_is_not_counted():
    """The choice heads predicted the failure: no retry, and the breaker (one failure opens it) stays
    closed for the requests the model does answer; the same failure undoubted still counts."""
    bs = breakers("a", "b")
    attempt, called = models(a=ModelError("fails on this topic"), b="B")
    for _ in range(5):
        result = await first_answer(["a", "b"], attempt, Deadline(5), breakers=bs, is_retryable=lambda e: True,
                                    retry=RetryPolicy(retries=1, backoff_s=0), doubted={"a"})
        assert result.model == "b" and result.failures[0].model == "a" and not result.failures[0].skipped
    assert called == ["a", "b"] * 5 and bs["a"].state.value == "closed"
    await first_answer(["a", "b"], attempt, Deadline(5), breakers=bs)
    assert bs["a"].state.value == "open"


@pytest.mark.parametrize("error,counts", [
    (ModelError("engine crashed"), True),
    (Stalled("hung"), True),
    (InvalidRequest("lone surrogate"), False),  # the client's input
    (DeadlineExceeded("the client's 300 ms"), False),  # the client's deadline
    (DeadlineExpired("share ran out"), False),
    (PlatformError("message over the transport's cap"), False),
    (TypeError("a bug of ours"), False),
])
async def test_only_the_models_own_failures_count(error, counts):
    bs = breakers("a", "b")
    attempt, _ = models(a=error, b="B")
    try:
        await first_answer(["a", "b"], attempt, Deadline(5), breakers=bs)
    except InvalidRequest:
        pass
    assert (bs["a"].state.value == "open") is counts


async def test_a_platform_failure_moves_on_and_is_blamed_on_the_platform():
    attempt, called = models(a=PlatformError("too big"), b="B")
    result = await first_answer(["a", "b"], attempt, Deadline(5))
    assert result.model == "b" and result.failures[0].blame is Blame.PLATFORM


async def test_share_for_the_first_answer_counts_only_callable_models():
    shares = {}

    async def attempt(name, given: Attempt):
        shares[name] = given.share.remaining()
        if name == "a":
            raise ModelError("down")
        return name

    bs = breakers("a", "b", "c")
    bs["b"].record_failure(bs["b"].acquire())  # b is open: it does not take a share
    result = await first_answer(["a", "b", "c"], attempt, Deadline(1.0), breakers=bs)
    assert result.model == "c"
    assert 0.45 < shares["a"] <= 0.5  # two callable models: a and c
    assert shares["c"] > 0.45  # the last one gets the rest


async def test_the_last_model_gets_the_rest_less_a_bounded_reserve_for_the_tail():
    budgets = {}

    async def attempt(name, given):
        budgets[name] = given.share.remaining()
        return name

    await first_answer(["only"], attempt, Deadline(10.0), tail=1, timing=TimePolicy(tail_reserve_s=2.0))
    assert 7.9 < budgets["only"] <= 8.0  # not half: the rest less 2 s
    await first_answer(["only"], attempt, Deadline(1.0), tail=1, timing=TimePolicy(tail_reserve_s=2.0))
    assert 0.45 < budgets["only"] <= 0.5  # the reserve is never more than half


async def test_a_model_that_produces_nothing_for_its_stall_limit_is_hung_and_blamed():
    bs = breakers("hung", "ok")

    async def attempt(name, given: Attempt):
        if name == "hung":
            await given.first(asyncio.Event().wait())
        return name

    result = await first_answer(["hung", "ok"], attempt, Deadline(5.0), breakers=bs, stall_s={"hung": 0.1})
    assert result.model == "ok" and isinstance(result.failures[0].error, Stalled)
    assert bs["hung"].state.value == "open"


async def test_a_share_shorter_than_the_stall_limit_is_not_the_models_fault():
    bs = breakers("slow", "ok")

    async def attempt(name, given: Attempt):
        if name == "slow":
            await given.first(asyncio.Event().wait())
        return name

    result = await first_answer(["slow", "ok"], attempt, Deadline(0.4), breakers=bs, stall_s={"slow": 10.0})
    assert result.model == "ok" and result.failures[0].blame is Blame.DEADLINE
    assert bs["slow"].state.value == "closed"


async def test_slow_is_not_hung_a_model_that_keeps_producing_is_cut_only_by_the_request_deadline():
    async def attempt(name, given: Attempt):
        await given.first(asyncio.sleep(0.01))  # first token at once
        for _ in range(10):  # then steady tokens, 60 ms each: far longer than the 0.25 s share in all
            await given.next(asyncio.sleep(0.06))
        return name

    result = await first_answer(["long", "other"], attempt, Deadline(2.0), stall_s={"long": 0.2})
    assert result.model == "long" and not result.failures


async def test_the_requests_own_deadline_stops_the_walk_without_blame():
    bs = breakers("a", "b")

    async def attempt(name, given: Attempt):
        await given.first(asyncio.sleep(0.001))
        await given.next(asyncio.Event().wait())  # keeps the request until its deadline
        return name

    with pytest.raises(ChainExhausted):
        await first_answer(["a", "b"], attempt, Deadline(0.3), breakers=bs, stall_s={"a": 5.0, "b": 5.0})
    assert all(b.state.value == "closed" for b in bs.values())


async def test_a_cancelled_walk_releases_the_half_open_probe():
    clock = [0.0]
    bs = {"a": CircuitBreaker("a", BreakerPolicy(failure_threshold=1, cooldown_s=1), clock=lambda: clock[0])}
    bs["a"].record_failure(bs["a"].acquire())
    clock[0] = 5.0  # cooled down: the next call is the probe

    async def attempt(name, given):
        await asyncio.Event().wait()

    task = asyncio.ensure_future(first_answer(["a"], attempt, Deadline(5), breakers=bs))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    bs["a"].acquire()  # the probe slot was freed: a new probe may go


def test_blame_of_each_kind():
    assert blame(InvalidRequest("x")) is Blame.CLIENT
    assert blame(ModelError("x")) is Blame.MODEL
    assert blame(Stalled("x")) is Blame.MODEL
    assert blame(DeadlineExceeded("x")) is Blame.DEADLINE
    assert blame(PlatformError("x")) is Blame.PLATFORM
    assert blame(KeyError("x")) is Blame.PLATFORM


async def test_a_prompt_too_long_for_one_window_moves_on_without_blame():
    bs = breakers("small", "large")
    attempt, called = models(small=InvalidRequest("exceeds the context window of 256",
                                                  code="context_length_exceeded"), large="L")
    result = await first_answer(["small", "large"], attempt, Deadline(5), breakers=bs)
    assert (result.model, called) == ("large", ["small", "large"])
    assert result.failures[0].blame is Blame.NONE and bs["small"].state.value == "closed"
