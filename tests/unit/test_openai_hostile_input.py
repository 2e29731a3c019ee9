"""Hostile and unlucky input to OpenAI's deeper parameters: schemas, tools, stop strings with
structured output. Each is the client's 400 or an answer; never a 500, a fetch, or a breaker that opens
for every user."""

import json
import urllib.request

import pytest
from pydantic import ValidationError

from graphs.blame import Blame, blame
from graphs.deadline import Deadline
from graphs.failover import ChainExhausted, Failure
from graphs.validators import UnfitOutput, structured
from serve_app.schemas.chat import ChatCompletionRequest
from serve_app.services.chat import _check_schemas
from serve_app.services.context import RequestContext
from serve_app.services.roster import exhausted
from serve_app.stream_state import StreamState
from vocabulary.errors import InvalidRequest, ModelError, ServiceUnavailable
from vocabulary.tool_schema import check_tools

OBJ = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def answer(content, finish="stop"):
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}]}


def test_an_unfit_answer_moves_on_without_blaming_the_model():
    with pytest.raises(UnfitOutput) as info:
        structured("m", answer('{"town": "x"}'), OBJ, None)
    assert blame(info.value) is Blame.NONE  # the client's schema decided it, not the model's health


def test_an_answer_that_may_have_ended_on_the_clients_stop_string_is_returned_as_it_is():
    cut = answer('{"city": "Par')
    assert structured("m", cut, OBJ, None, stop=["is"]) is cut
    assert structured("m", answer('{"city": "Par', "length"), OBJ, None)["choices"][0]["finish_reason"] == "length"


def test_validating_an_answer_never_fetches_a_remote_reference(monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("the validator tried to fetch a URL")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    schema = {"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/schema.json"}}}
    assert structured("m", answer('{"a": 1}'), schema, None)  # unresolvable: not the model's fault


@pytest.mark.parametrize("schema, why", [
    ({"$ref": "http://169.254.169.254/latest"}, "only local references"),
    ({"properties": {"a": {"$dynamicRef": "file:///etc/passwd"}}}, "only local references"),
    ({"$schema": {}, "type": "object"}, "not a valid JSON schema"),
    ({"type": "object", "required": True}, "not a valid JSON schema"),  # draft 3
    ({"type": "object", "$defs": [1]}, "not a valid JSON schema"),
    ({"type": 5}, "not a valid JSON schema"),
    (json.loads('{"items":' * 40 + "{}" + "}" * 40), "nests deeper"),
    ({"type": "object", "description": "x" * 70_000}, "KiB"),
])
def test_a_schema_that_cannot_be_checked_safely_is_the_clients_400(schema, why):
    with pytest.raises(InvalidRequest) as info:
        _check_schemas([(schema, "response_format.json_schema.schema")])
    assert why in info.value.message and info.value.param == "response_format.json_schema.schema"


def test_a_schema_nested_too_deep_for_recursion_is_refused_at_parsing():
    deep = json.loads('{"items":' * 300 + "{}" + "}" * 300)
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "x"}], "response_format": {
            "type": "json_schema", "json_schema": {"name": "n", "schema": deep}}})


@pytest.mark.parametrize("choice", [{"type": "function", "function": "f"}, {"type": "function", "function": ["f"]},
                                    {"type": "function"}, "sometimes"])
def test_odd_tool_choice_shapes_are_400(choice):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(InvalidRequest) as info:
        check_tools(tools, choice, None)
    assert info.value.param == "tool_choice"


def refusal(model):
    return Failure(model, InvalidRequest("too long", param="messages", code="context_length_exceeded"), Blame.NONE)


def test_too_long_for_every_model_names_the_largest_window():
    ctx = RequestContext("r", Deadline(10))
    err = exhausted("llm", ChainExhausted([refusal("small"), refusal("wide")], []), ctx, {"small": 2048, "wide": 4096})
    assert isinstance(err, InvalidRequest) and err.code == "context_length_exceeded"
    assert "4096 tokens (wide)" in err.message


def test_too_long_for_one_model_while_the_wider_one_failed_otherwise_is_not_the_clients_fault():
    ctx = RequestContext("r", Deadline(10))
    failures = [refusal("small"), Failure("wide", ModelError("boom"), Blame.MODEL)]
    err = exhausted("llm", ChainExhausted(failures, []), ctx, {"small": 2048, "wide": 4096})
    assert isinstance(err, ServiceUnavailable)


def test_a_streams_usage_is_each_choices_last_with_the_prompt_once():
    state = StreamState("id", 0)
    for choice, usages in ((0, [{"prompt_tokens": 9, "completion_tokens": 2}, {"prompt_tokens": 9, "completion_tokens": 3}]),
                           (1, [{"prompt_tokens": 9, "completion_tokens": 4, "estimated": True}])):
        for u in usages:
            assert state.relabel({"choices": [], "usage": u}, "m", choice) is False
    assert state.usage() == {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16, "estimated": True}


def test_a_model_of_unknown_window_that_broke_does_not_hide_the_clients_400():
    ctx = RequestContext("r", Deadline(10))
    failures = [refusal("small"), refusal("wide"), Failure("up", ModelError("stream ended before [DONE]"), Blame.MODEL)]
    err = exhausted("llm", ChainExhausted(failures, []), ctx, {"small": 2048, "wide": 4096, "up": None})
    assert isinstance(err, InvalidRequest) and "4096 tokens (wide)" in err.message
