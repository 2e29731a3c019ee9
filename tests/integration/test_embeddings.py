"""/v1/embeddings with the official openai client against the real service: the router's own
all-MiniLM-L6-v2 (placement: ingress) answers."""

import httpx
import numpy as np
import openai
import pytest

pytestmark = pytest.mark.integration

MODEL = "all-minilm-l6-v2"


@pytest.fixture
def client(switchboard):
    return openai.OpenAI(base_url=f"{switchboard}/v1", api_key="x", max_retries=0, timeout=120)


def vectors(result) -> np.ndarray:
    return np.array([d.embedding for d in result.data], dtype=np.float32)


def test_similar_sentences_are_closer_than_unrelated_ones(client):
    result = client.embeddings.create(model=MODEL, input=[
        "How do I reset my password?", "I forgot my password and need to change it.",
        "The volcano erupted and covered the village in ash."], encoding_format="float")
    a, b, c = vectors(result)
    assert np.allclose([np.linalg.norm(v) for v in (a, b, c)], 1.0, atol=1e-4)  # normalised: cosine = dot
    assert a @ b > 0.6 and a @ c < 0.2 and b @ c < 0.2, (a @ b, a @ c, b @ c)
    assert result.model == MODEL and len(a) == 384


def test_a_list_keeps_its_order_and_indices(client):
    texts = ["first: apples", "second: a much longer sentence about the weather in Lisbon in May", "third"]
    batch = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2] and {d.object for d in batch.data} == {"embedding"}
    singles = [client.embeddings.create(model=MODEL, input=t, encoding_format="float") for t in texts]
    assert np.allclose(vectors(batch), np.vstack([vectors(s) for s in singles]), atol=1e-5)
    tokens = [s.usage.prompt_tokens for s in singles]
    assert tokens[2] == 3  # [CLS] third [SEP], by the model's own tokenizer
    assert batch.usage.prompt_tokens == batch.usage.total_tokens == sum(tokens)


def test_base64_decodes_to_the_same_floats(client, switchboard):
    text = "Base64 carries little-endian float32."
    floats = vectors(client.embeddings.create(model=MODEL, input=text, encoding_format="float"))
    decoded = vectors(client.embeddings.create(model=MODEL, input=text))  # the client asks base64 and decodes it
    assert np.array_equal(floats, decoded)
    raw = httpx.post(f"{switchboard}/v1/embeddings", timeout=60,
                     json={"model": MODEL, "input": text, "encoding_format": "base64"}).json()
    assert isinstance(raw["data"][0]["embedding"], str)


def test_openai_model_names_are_served_by_the_encoder(client):
    result = client.embeddings.create(model="text-embedding-3-small", input="hello", encoding_format="float")
    assert result.model == MODEL
    assert np.array_equal(vectors(result), vectors(client.embeddings.create(model=MODEL, input="hello",
                                                                            encoding_format="float")))


def test_dimensions_must_be_the_models_own(client):
    assert len(client.embeddings.create(model=MODEL, input="hi", dimensions=384).data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input="hi", dimensions=256)
    assert info.value.body["param"] == "dimensions" and "384" in info.value.message


@pytest.mark.parametrize("kwargs,param,words", [
    ({"input": ""}, "input", "empty"),
    ({"input": ["fine", ""]}, "input.1", "empty"),
    ({"input": []}, "input", "at least one text"),
    ({"input": ["x"] * 257}, "input", "257 inputs, over the limit of 256"),
    ({"input": [[101, 2023, 102]]}, "input", "token arrays"),
    ({"input": "word " * 300}, "input", "302 tokens"),  # over the model's 256-token window: refused, not cut
])
def test_bad_input_is_a_400_naming_it(client, kwargs, param, words):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, encoding_format="float", **kwargs)
    assert info.value.body["param"] == param and words in info.value.message, info.value.body


def test_an_input_over_the_character_limit_is_a_413(switchboard):
    r = httpx.post(f"{switchboard}/v1/embeddings", json={"model": MODEL, "input": "x" * 8193}, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["param"] == "input"


def test_unknown_model_is_a_404(client):
    for model in ("text-embedding-4-huge", "smollm2"):
        with pytest.raises(openai.NotFoundError) as info:
            client.embeddings.create(model=model, input="hi")
        assert info.value.code == "model_not_found" and info.value.body["param"] == "model"


def test_the_embedding_model_is_listed(client):
    listed = {m.id: m for m in client.models.list()}
    assert listed[MODEL].model_extra["family"] == "embedding"


def test_a_one_millisecond_deadline_is_a_504(switchboard):
    r = httpx.post(f"{switchboard}/v1/embeddings", headers={"x-switchboard-deadline-ms": "1"},
                   json={"model": MODEL, "input": ["a sentence"] * 64}, timeout=60)
    assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
