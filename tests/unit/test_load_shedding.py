"""Load shedding: a request past a deployment's queue bound is the platform's refusal, not the model's
failure; a chain that only met full queues (or open breakers) is a 503 `overloaded` with retry-after;
every deployment and the ingress carry a bound."""

import asyncio

import pytest
from ray.serve.exceptions import BackPressureError

from graphs.blame import Blame, blame
from graphs.breaker import BreakerPolicy, BreakerState, CircuitBreaker, CircuitOpen
from graphs.deadline import Deadline
from graphs.failover import ChainExhausted, Failure, first_answer
from serve_app.builder import ingress_options
from serve_app.model_client import translate
from serve_app.services.context import RequestContext
from serve_app.services.roster import exhausted
from vocabulary.config import ModelSpec, SwitchboardConfig
from vocabulary.errors import ModelError, Overloaded, ServiceUnavailable
from deployments.options import deployment_options

BACKPRESSURE = BackPressureError(num_queued_requests=4, max_queued_requests=4, status_code=503, retry_after_s=1)
LLM = {"name": "m", "family": "llm", "backend": {"kind": "upstream", "base_url": "http://127.0.0.1:9/v1",
                                                  "model": "m"}}


def test_serve_backpressure_becomes_overloaded_and_blames_nobody():
    err = translate(BACKPRESSURE, "m")
    assert isinstance(err, Overloaded) and err.http_status == 503 and err.code == "overloaded"
    assert err.retry_after_s == 1 and "max_queued_requests=4" in err.message
    assert blame(err) is Blame.NONE


def test_a_shed_call_does_not_count_on_the_breaker_and_the_chain_moves_on():
    breaker = CircuitBreaker("m", BreakerPolicy(failure_threshold=1, window_s=60, cooldown_s=60))
    asked = []

    async def attempt(name, _):
        asked.append(name)
        if name == "m":
            raise translate(BACKPRESSURE, name)
        return "answer"

    result = asyncio.run(first_answer(["m", "n"], attempt, Deadline(5), breakers={"m": breaker}))
    assert result.model == "n" and asked == ["m", "n"]
    assert breaker.state is BreakerState.CLOSED  # a one-failure breaker: one counted failure would open it


@pytest.mark.parametrize("others, expected", [
    ([], Overloaded),
    ([CircuitOpen("n", 5.0)], Overloaded),
    ([ModelError("n broke")], ServiceUnavailable),
])
def test_a_chain_that_met_only_full_queues_is_overloaded(others, expected):
    failures = [Failure("m", Overloaded("m is at its queue bound"), Blame.NONE)]
    failures += [Failure("n", e, Blame.NONE if isinstance(e, CircuitOpen) else Blame.MODEL) for e in others]
    err = exhausted("llm", ChainExhausted(failures, []), RequestContext("r", Deadline(10)))
    assert type(err) is expected
    assert (err.code == "overloaded") is (expected is Overloaded)
    assert (err.retry_after_s == 1) is (expected is Overloaded)


def test_every_deployment_and_the_ingress_have_a_queue_bound():
    spec = ModelSpec(**LLM, max_queued_requests=3)
    options = deployment_options(spec)
    assert options["max_queued_requests"] == 3
    assert options["backpressure_config"].status_code == 503 and options["backpressure_config"].retry_after_s == 1
    assert deployment_options(ModelSpec(**LLM))["max_queued_requests"] == 32  # bounded by default
    ingress = ingress_options(SwitchboardConfig(models=[LLM]))
    assert ingress["max_queued_requests"] == 512 and ingress["backpressure_config"].retry_after_s == 1
