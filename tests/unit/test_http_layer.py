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


async def test_the_bodies_in_flight_are_bounded_and_the_excess_is_shed_at_once():
    """Bound 1500 bytes: requests hold their bodies until they end; one that would pass the bound gets
    503 `overloaded` with retry-after before its body is kept, a declared or a chunked one; an ended or
    cancelled request gives its bytes back."""
    import asyncio

    release = asyncio.Event()

    async def app(scope, receive, send):
        await receive()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limiter = BodyLimitMiddleware(app, limit=lambda: 1000, in_flight=lambda: 1500)

    async def request(size: int, *, declared: bool = True, pieces: int = 1):
        body = b"x" * size
        messages = [{"type": "http.request", "body": body[i * size // pieces:(i + 1) * size // pieces],
                     "more_body": i < pieces - 1} for i in range(pieces)]
        headers = [(b"content-length", str(size).encode())] if declared else []
        sent = []

        async def receive():
            return messages.pop(0) if messages else await asyncio.Event().wait()

        async def send(message):
            sent.append(message)

        await limiter({"type": "http", "path": "/chat", "headers": headers}, receive, send)
        start = sent[0]
        return start["status"], dict(start["headers"]), json.loads(sent[1]["body"]) if start["status"] != 200 else None

    first = asyncio.create_task(request(800))
    await asyncio.sleep(0.01)
    assert limiter.held == 800
    status, headers, body = await asyncio.wait_for(request(800), 1)  # 1600 > 1500: shed, not queued
    assert status == 503 and headers[b"retry-after"] == b"1" and body["error"]["code"] == "overloaded"
    chunked = asyncio.create_task(request(600, declared=False, pieces=3))  # 1400: fits
    await asyncio.sleep(0.01)
    assert limiter.held == 1400
    status, _, _ = await asyncio.wait_for(request(200, declared=False, pieces=2), 1)
    assert status == 503 and limiter.held == 1400
    release.set()
    assert (await first)[0] == 200 and (await chunked)[0] == 200 and limiter.held == 0

    release.clear()
    stuck = asyncio.create_task(request(900))
    await asyncio.sleep(0.01)
    assert limiter.held == 900
    stuck.cancel()  # the client left: its bytes come back
    await asyncio.gather(stuck, return_exceptions=True)
    assert limiter.held == 0
    late = asyncio.create_task(request(1000))
    await asyncio.sleep(0.01)
    assert limiter.held == 1000
    release.set()
    assert (await late)[0] == 200 and limiter.held == 0
