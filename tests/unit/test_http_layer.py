"""The ingress' HTTP layer (middleware and error handlers) on a small FastAPI app, no Ray."""

import json
import logging

from fastapi import FastAPI
from fastapi.testclient import TestClient

from serve_app import http_errors
from serve_app.middleware import BodyLimitMiddleware, RequestIdMiddleware
from serve_app.schemas.chat import ChatCompletionRequest
from vocabulary.errors import ModelNotFound


def make_app(limit=1000):
    app = FastAPI()
    app.add_middleware(BodyLimitMiddleware, limit=lambda: limit)
    app.add_middleware(RequestIdMiddleware)
    http_errors.install(app)

    @app.post("/chat")
    async def chat(body: ChatCompletionRequest):
        if body.model == "missing":
            raise ModelNotFound("model 'missing' does not exist", param="model")
        return {"n": len(body.messages)}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret internal detail")

    return TestClient(app, raise_server_exceptions=False)


def test_malformed_json_is_400_and_logged_with_payload(caplog):
    client = make_app()
    with caplog.at_level(logging.WARNING):
        r = client.post("/chat", content=b'{"messages": [', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in r.json()["error"]["message"]
    record = next(rec for rec in caplog.records if rec.getMessage() == "request rejected")
    assert record.payload == '{"messages": ['
    assert record.request_id == r.headers["x-request-id"]


def test_wrong_types_and_empty_messages_name_the_field():
    client = make_app()
    r = client.post("/chat", json={"messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"


def test_switchboard_errors_keep_status_and_code():
    r = make_app().post("/chat", json={"model": "missing", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


def test_body_over_limit_is_413_even_without_content_length():
    client = make_app(limit=100)
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 500}]}).encode()
    r = client.post("/chat", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = client.post("/chat", content=iter([body[:50], body[50:]]), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.headers["x-request-id"]


def test_client_request_id_is_echoed():
    r = make_app().post("/chat", json={"messages": [{"role": "user", "content": "x"}]},
                        headers={"x-request-id": "abc-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"


def test_unexpected_errors_hide_internals():
    r = make_app().get("/boom")
    assert r.status_code == 500
    assert "secret" not in r.text and "request id" in r.json()["error"]["message"]


def test_unknown_route_is_openai_shaped_404():
    r = make_app().get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
