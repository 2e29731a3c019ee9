"""RouterService.order_chain: one ordering per request and chain, however often a request asks."""

import random
from types import SimpleNamespace

import numpy as np

from graphs.deadline import Deadline
from intent_router.choice_head import EMBEDDING_DIMS, NUMERIC, ChoiceHeads, FamilyHead, ModelHead
from serve_app.services.context import RequestContext
from serve_app.services.router import RouterService
from vocabulary.router_config import ChoiceSpec, RouterSpec

WIDTH = EMBEDDING_DIMS + len(NUMERIC)


def service(exploration: float, seed: int = 0) -> RouterService:
    family = FamilyHead(np.zeros(WIDTH), np.ones(WIDTH), {
        "smollm2": ModelHead(100, 30, np.zeros(WIDTH), -1.0),  # about 0.27: demoted
        "smollm2-hf": ModelHead(100, 98, np.zeros(WIDTH), 3.0)})  # about 0.95
    heads = ChoiceHeads({"llm": family}, version=2)
    svc = RouterService(RouterSpec(choice=ChoiceSpec(exploration=exploration)), SimpleNamespace())
    svc._choice = SimpleNamespace(current=lambda: heads)
    svc._rng = random.Random(seed)
    return svc


def test_a_chain_asked_for_again_gets_the_same_order_and_one_log_entry():
    svc = service(exploration=0.5)
    chain = ["smollm2", "smollm2-hf"]
    orders = set()
    for n in range(200):
        ctx = RequestContext(f"r{n}", Deadline(10))
        first = svc.order_chain("llm", chain, ctx)
        again = [svc.order_chain("llm", chain, ctx) for _ in range(5)]  # a committee member, its final turn
        assert all(a == first for a in again)
        assert len(ctx.choices) == 1 and ctx.choices[0]["order"] == first
        orders.add(tuple(first))
    # exploration still happens, one draw per request
    assert orders == {("smollm2-hf", "smollm2"), ("smollm2", "smollm2-hf")}


def test_without_exploration_the_learned_order():
    svc = service(exploration=0.0)
    ctx = RequestContext("r", Deadline(10))
    assert svc.order_chain("llm", ["smollm2", "smollm2-hf"], ctx) == ["smollm2-hf", "smollm2"]
    assert ctx.choices[0]["head_version"] == 2 and ctx.choices[0]["explored"] is False
