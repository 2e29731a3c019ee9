import pytest

from deployments.llm.transformers_backend import _StopFilter
from vocabulary.chat_chunks import assemble, shows_progress, until_progress


def chunk(content=None, finish=None, role=None, usage=None):
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    out = {"id": "c1", "created": 7, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        out["usage"] = usage
    return out


def test_a_role_only_chunk_is_not_progress():
    assert not shows_progress(chunk(role="assistant", content=""))
    assert shows_progress(chunk(content="Hi"))
    assert shows_progress(chunk(finish="stop"))
    assert shows_progress({"choices": [], "usage": {"total_tokens": 3}})


async def test_until_progress_reads_past_the_role_chunk():
    async def gen():
        for c in (chunk(role="assistant"), chunk(content="He"), chunk(content="llo")):
            yield c

    it = gen()
    read = await until_progress(it)
    assert [c["choices"][0]["delta"].get("content") for c in read] == [None, "He"]
    assert (await anext(it))["choices"][0]["delta"]["content"] == "llo"


def test_assemble_joins_content_and_keeps_finish_and_usage():
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    out = assemble([chunk(role="assistant"), chunk(content="He"), chunk(content="llo"),
                    chunk(finish="length", usage=usage)], "smollm2")
    assert out["object"] == "chat.completion" and out["model"] == "smollm2" and out["id"] == "c1"
    assert out["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                 "finish_reason": "length"}
    assert out["usage"] == usage


@pytest.mark.parametrize("pieces,stops,expected", [
    (["1. 1\n2", ". 2\n3. 3\n4. 4\n5", ". 5"], ["5"], "1. 1\n2. 2\n3. 3\n4. 4\n"),  # the stop string is not sent
    (["Hello wor", "ld END here"], ["END"], "Hello world "),
    (["E", "N", "D"], ["END"], ""),  # split across pieces
    (["no stop here"], ["zzz"], "no stop here"),
    (["abc"], None, "abc"),
])
def test_streamed_text_stops_before_the_stop_string(pieces, stops, expected):
    f = _StopFilter(stops)
    out = ""
    for piece in pieces:
        text, stopped = f.feed(piece)
        out += text
        if stopped:
            break
    out += f.flush()
    assert out == expected


def tool_chunk(calls=None, content=None, finish=None, logprobs=None, index=0):
    delta = {k: v for k, v in (("content", content), ("tool_calls", calls)) if v is not None}
    return {"id": "c1", "created": 7,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}


def test_assemble_merges_tool_call_deltas_by_index():
    chunks = [tool_chunk(content=""),
              tool_chunk([{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]),
              tool_chunk([{"index": 0, "function": {"arguments": '{"city": '}}]),
              tool_chunk([{"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{"}}]),
              tool_chunk([{"index": 0, "function": {"arguments": '"Paris"}'}}]),
              tool_chunk([{"index": 1, "function": {"arguments": "}"}}]),
              tool_chunk(finish="tool_calls")]
    out = assemble(chunks, "smollm2")["choices"]
    assert out == [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}}]


def test_assemble_keeps_content_that_came_with_tool_calls():
    chunks = [tool_chunk(content="Let me look."),
              tool_chunk([{"index": 0, "id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]),
              tool_chunk(finish="tool_calls")]
    message = assemble(chunks, "m")["choices"][0]["message"]
    assert message["content"] == "Let me look." and [t["id"] for t in message["tool_calls"]] == ["call_a"]


def test_assemble_joins_logprobs_and_keeps_choices_apart():
    def lp(token):
        return {"content": [{"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}]}

    chunks = [tool_chunk(content="He", logprobs=lp("He")), tool_chunk(content="Yo", logprobs=lp("Yo"), index=1),
              tool_chunk(content="llo", logprobs=lp("llo")), tool_chunk(finish="stop"),
              tool_chunk(finish="length", index=1)]
    first, second = assemble(chunks, "m")["choices"]
    assert first["message"]["content"] == "Hello" and first["finish_reason"] == "stop"
    assert [t["token"] for t in first["logprobs"]["content"]] == ["He", "llo"]
    assert second == {"index": 1, "message": {"role": "assistant", "content": "Yo"}, "finish_reason": "length",
                      "logprobs": lp("Yo")}
    assert "logprobs" not in assemble([tool_chunk(content="x")], "m")["choices"][0]  # none asked, none given


def test_n_answers_merge_into_n_choices_with_the_prompt_counted_once():
    from vocabulary.chat_chunks import merge_choices

    def answer(text, model="m", completion=3):
        return {"id": "x", "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                        "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": completion, "total_tokens": 10 + completion}}

    merged = merge_choices([answer("a"), answer("b", completion=5)])
    assert [(c["index"], c["message"]["content"]) for c in merged["choices"]] == [(0, "a"), (1, "b")]
    assert merged["usage"] == {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18}
    assert merge_choices([answer("a"), answer("b", model="n")])["model"] == "m,n"
    assert merge_choices([answer("a")]) == answer("a")
