"""A model placed in the ingress: the bounds its deployment's Serve options gave are kept (calls at once,
calls waiting, then Overloaded at once), a cancelled or abandoned call gives its slot back, a deadline
ends a call, and placement follows the config's rules."""

import asyncio

import pytest
from pydantic import ValidationError

from graphs.deadline import Deadline
from serve_app.builder import InIngressModel, bind_model
from serve_app.in_process_client import InProcessModelClient
from serve_app.serve_status import deployment_names
from vocabulary.config import ModelSpec, SwitchboardConfig
from vocabulary.errors import DeadlineExceeded, ModelError, Overloaded

UPSTREAM = {"kind": "upstream", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


class GatedModel:
    """A model whose every call waits until the test opens its gate; counts what runs at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.running = 0
        self.most = 0
        self.closed = 0

    async def chat(self, payload):
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gate.wait()
            return {"answer": payload}
        finally:
            self.running -= 1

    async def chat_stream(self, payload):
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            for i in range(3):
                await self.gate.wait()
                yield {"chunk": i}
        finally:
            self.running -= 1
            self.closed += 1

    async def broken(self, payload):
        raise RuntimeError("not a SwitchboardError")


async def until(condition, what: str, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0)
    assert condition(), what


def test_at_most_max_ongoing_run_and_past_the_queue_bound_a_call_is_shed_at_once():
    async def run():
        model = GatedModel()
        client = InProcessModelClient("m", model, max_ongoing=2, max_queued=1)
        calls = [asyncio.create_task(client.call("chat", i)) for i in range(3)]  # two run, one waits
        await until(lambda: model.running == 2 and client._waiting == 1, "two running, one waiting")
        with pytest.raises(Overloaded):
            await client.call("chat", 99)  # the queue is full: refused without waiting
        model.gate.set()
        answers = await asyncio.gather(*calls)
        return model, answers

    model, answers = asyncio.run(run())
    assert model.most == 2 and [a["answer"] for a in answers] == [0, 1, 2]


def test_a_cancelled_waiting_call_leaves_the_queue_and_a_cancelled_running_call_frees_its_slot():
    async def run():
        model = GatedModel()
        client = InProcessModelClient("m", model, max_ongoing=1, max_queued=1)
        running = asyncio.create_task(client.call("chat", 1))
        await until(lambda: model.running == 1, "one running")
        waiting = asyncio.create_task(client.call("chat", 2))
        await until(lambda: client._waiting == 1, "one waiting")
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert client._waiting == 0
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        assert model.running == 0
        model.gate.set()
        return await asyncio.wait_for(client.call("chat", 3), 5)  # the slot is free again

    assert asyncio.run(run()) == {"answer": 3}


def test_an_abandoned_stream_closes_the_model_and_frees_its_slot():
    async def run():
        model = GatedModel()
        model.gate.set()
        client = InProcessModelClient("m", model, max_ongoing=1, max_queued=0)
        stream = await client.stream("chat_stream", None)
        assert await anext(stream) == {"chunk": 0}
        stream.cancel()  # the reader stops after the first chunk, as the roster does when it has enough
        await until(lambda: model.closed == 1, "the model's generator closed")
        second = await client.stream("chat_stream", None)
        return [chunk async for chunk in second]

    assert asyncio.run(run()) == [{"chunk": 0}, {"chunk": 1}, {"chunk": 2}]


def test_a_deadline_ends_a_call_and_other_errors_become_model_errors():
    async def run():
        model = GatedModel()
        client = InProcessModelClient("m", model, max_ongoing=1, max_queued=0)
        with pytest.raises(DeadlineExceeded):
            await client.call("chat", 1, Deadline(0.05))
        assert model.running == 0
        with pytest.raises(ModelError, match="model m failed"):
            await client.call("broken", None)

    asyncio.run(run())


def spec(**extra) -> ModelSpec:
    return ModelSpec.model_validate({"name": "m", "family": "llm", "backend": UPSTREAM, **extra})


def test_an_upstream_model_runs_in_the_ingress_unless_it_is_placed_or_scaled_as_a_deployment():
    assert spec().in_ingress()
    assert not spec(placement="deployment").in_ingress()
    assert not spec(resources={"custom": {"accelerator_node": 0.1}}).in_ingress()  # placed on a node
    assert not spec(autoscaling={"max_replicas": 4}).in_ingress()
    with pytest.raises(ValidationError, match="placement 'deployment'"):
        spec(placement="ingress", autoscaling={"max_replicas": 4})
    llama = {"name": "l", "family": "llm", "backend": {"kind": "llama_cpp", "source": {"path": "/x.gguf"}}}
    assert not ModelSpec.model_validate(llama).in_ingress()
    with pytest.raises(ValidationError, match="needs placement 'deployment'"):
        ModelSpec.model_validate({**llama, "placement": "ingress"})


def test_the_builder_binds_no_deployment_for_a_model_in_the_ingress():
    config = SwitchboardConfig.model_validate({
        "models": [{"name": "m", "family": "llm", "backend": UPSTREAM},
                   {"name": "d", "family": "llm", "backend": UPSTREAM, "placement": "deployment"}]})
    assert isinstance(bind_model(config.models[0], config), InIngressModel)
    assert not isinstance(bind_model(config.models[1], config), InIngressModel)
    assert deployment_names(config) == {"d": "llm-d"}  # health asks Serve about deployments only
