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
