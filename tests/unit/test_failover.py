import pytest

from graphs.deadline import Deadline
from graphs.failover import ChainExhausted, first_answer


class ClientError(Exception):
    pass


def is_client(exc):
    return isinstance(exc, ClientError)


def models(**behaviour):
    called = []

    async def attempt(name):
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
