"""Health, errors and limits of the running service, over plain HTTP."""

import json

import httpx
import pytest

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
    assert body["status"] == "ok"
    assert set(body["models"]) == {"smollm2", "smollm2-upstream"}
    for model in body["models"].values():
        assert model["status"] == "ok" and model["latency_ms"] > 0 and model["error"] is None
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


def test_body_over_limit_is_413(http):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
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


def test_streaming_error_before_first_token_is_an_http_error(http):
    # llama.cpp's server answers a streamed prompt over its context with 200 and no events;
    # that is an incomplete answer and must not reach the client as an empty success.
    too_long = {"model": "smollm2-upstream", "stream": True,
                "messages": [{"role": "user", "content": "word " * 600}]}
    r = http.post("/v1/chat/completions", json=too_long)
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "upstream_stream_incomplete"
    # the in-process engine says what was wrong, before any event is sent
    r = http.post("/v1/chat/completions", json={**too_long, "model": "smollm2",
                                                "messages": [{"role": "user", "content": "word " * 1500}]})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
