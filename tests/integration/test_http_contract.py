"""Health, errors and limits of the running service, over plain HTTP."""

import json

import httpx
import pytest

from tests.integration.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.integration

CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@pytest.fixture
def http(switchboard):
    with httpx.Client(base_url=switchboard, timeout=120) as c:
        yield c


def test_deep_health_reports_every_model(http):
    r = http.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    # The web search model cannot reach the web in tests (loopback only): it is the one model
    # down, and search still has the local index, so the service is degraded, not down.
    assert body["status"] == "degraded"
    assert body["routes"] == {"llm": "ok", "stt": "ok", "tts": "ok", "vision": "ok", "search": "ok",
                              "router": "ok"}
    assert set(body["models"]) == {"smollm2", "smollm2-hf", "smollm2-upstream", "whisper-base", "whisper-tiny",
                                   "kokoro", "piper", "espeak", "rapidocr", "tesseract", "web", "local", "router"}
    assert body["models"]["smollm2"]["breaker"] == "closed"
    for name, model in body["models"].items():
        assert "error" not in model  # the public view: a reason class, no error text (it may hold addresses)
        if name == "web":
            assert model["status"] == "error" and model["reason"] == "ModelError"
        else:
            assert model["status"] == "ok" and model["latency_ms"] > 0 and model["reason"] is None
    admin = http.get("/api/admin/health", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert "web search failed" in admin["models"]["web"]["error"] and admin["models"]["smollm2"]["error"] is None
    assert http.get("/api/admin/health").status_code == 401
    assert http.get("/api/health/live").json() == {"status": "alive"}


@pytest.mark.parametrize("payload, status, param", [
    (b'{"messages": [', 400, None),
    (json.dumps({"messages": []}).encode(), 400, "messages"),
    (json.dumps({"messages": "hi"}).encode(), 400, "messages"),
    (json.dumps({**CHAT, "max_tokens": "many"}).encode(), 400, "max_tokens"),
    (json.dumps({**CHAT, "model": "gpt-17"}).encode(), 404, "model"),
])
def test_bad_requests_get_openai_shaped_4xx(http, payload, status, param):
    r = http.post("/v1/chat/completions", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["message"]
    assert r.headers["x-request-id"]


def test_too_many_messages_is_400(http):
    r = http.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "x"}] * 300})
    assert r.status_code == 400 and "over the limit of 256" in r.json()["error"]["message"]


def test_body_over_limit_is_413(http):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 3_100_000}]}
    r = http.post("/v1/chat/completions", json=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_request_id_is_returned_once_and_echoed(http):
    r = http.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "test-req-42"})
    assert r.status_code == 200
    assert r.headers.get_list("x-request-id") == ["test-req-42"]


def test_deadline_header(http):
    r = http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 200},
                  headers={"x-switchboard-deadline-ms": "1"})
    assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
    r = http.post("/v1/chat/completions", json=CHAT, headers={"x-switchboard-deadline-ms": "soon"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-switchboard-deadline-ms"


def test_stream_failing_before_first_token_fails_over_or_is_an_http_error(http):
    # llama.cpp's server answers a streamed prompt over its context with 200 and no events: an
    # incomplete answer, never passed on as an empty success. Before the first token the next
    # model answers instead (its context is larger), and the headers say what happened.
    too_long = {"model": "smollm2-upstream", "stream": True, "max_tokens": 4,
                "messages": [{"role": "user", "content": "word " * 600}]}
    r = http.post("/v1/chat/completions", json=too_long)
    assert r.status_code == 200
    assert r.headers["x-switchboard-model"] == "smollm2"
    assert r.headers["x-switchboard-failed"] == "smollm2-upstream"
    assert r.headers["x-switchboard-degraded"] == "true"
    assert r.text.rstrip().endswith("data: [DONE]") and '"model":"smollm2"' in r.text
    # A prompt no model can take is the client's error: a 400 before any event is sent.
    r = http.post("/v1/chat/completions", json={**too_long, "model": "smollm2",
                                                "messages": [{"role": "user", "content": "word " * 5000}]})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
