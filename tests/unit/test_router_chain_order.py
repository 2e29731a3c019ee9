"""RouterService.order_chain: one ordering per request and chain, however often a request asks."""

import random
from types import SimpleNamespace

import numpy as np

from graphs.deadline import Deadline
from intent_router.choice_head import EMBEDDING_DIMS, NUMERIC, ChoiceHeads, FamilyHead, ModelHead
from serve_app.flags.switches import Switches
from serve_app.services.context import RequestContext
from serve_app.services.router import RouterService
from vocabulary.router_config import ChoiceSpec, RouterSpec

WIDTH = EMBEDDING_DIMS + len(NUMERIC)


def service(exploration: float, seed: int = 0) -> RouterService:
    family = FamilyHead(np.zeros(WIDTH), np.ones(WIDTH), {
        "smollm2": ModelHead(100, 30, np.zeros(WIDTH), -1.0),  # about 0.27: demoted
        "smollm2-hf": ModelHead(100, 98, np.zeros(WIDTH), 3.0)})  # about 0.95
    heads = ChoiceHeads({"llm": family}, version=2)
    svc = RouterService(RouterSpec(choice=ChoiceSpec(exploration=exploration)), SimpleNamespace(switches=Switches()))
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


def test_the_models_the_heads_doubt_are_recorded_for_the_walk():
    """smollm2 (about 0.27) is doubted on every request; smollm2-hf (0.95) only when exploration put
    it first, which never happens here (it leads the ranking): the walk reads the set from the context."""
    svc = service(exploration=0.5)
    seen = set()
    for n in range(100):
        ctx = RequestContext(f"r{n}", Deadline(10))
        order = svc.order_chain("llm", ["smollm2", "smollm2-hf"], ctx)
        made = ctx.choices[0]
        assert made["doubted"] == ["smollm2"] and ctx.doubted(["smollm2", "smollm2-hf"]) == {"smollm2"}
        assert ctx.doubted(["smollm2-hf"]) == frozenset() and ctx.doubted(["whisper-base"]) == frozenset()
        seen.add((tuple(order), made["explored"]))
    assert seen == {(("smollm2-hf", "smollm2"), False), (("smollm2", "smollm2-hf"), True)}


def test_an_explored_model_is_doubted_even_when_its_chance_is_good():
    family = FamilyHead(np.zeros(WIDTH), np.ones(WIDTH), {
        "smollm2": ModelHead(100, 80, np.zeros(WIDTH), 1.4),  # about 0.80: above doubt_below, ranked second
        "smollm2-hf": ModelHead(100, 98, np.zeros(WIDTH), 3.0)})
    svc = RouterService(RouterSpec(choice=ChoiceSpec(exploration=0.5)), SimpleNamespace(switches=Switches()))
    svc._choice = SimpleNamespace(current=lambda: ChoiceHeads({"llm": family}, version=3))
    svc._rng = random.Random(1)
    doubts = set()
    for n in range(60):
        ctx = RequestContext(f"r{n}", Deadline(10))
        order = svc.order_chain("llm", ["smollm2", "smollm2-hf"], ctx)
        doubts.add((order[0], tuple(ctx.choices[0]["doubted"])))
    assert doubts == {("smollm2-hf", ()), ("smollm2", ("smollm2",))}
