"""A fast OpenAI-compatible upstream for loadtests/bench_gateway.py: /v1/chat/completions answers at
once with one fixed token (plain JSON, or SSE with `stream: true`), /v1/models lists one model.
A bare ASGI app under uvicorn (uvloop, httptools), one process:

    .venv/bin/python loadtests/gateway_stub.py --port 8101 [--model stub] [--delay-ms 0]

`--delay-ms` holds every chat answer that long first (a slow model, without using a CPU: what
loadtests/bench_autoscaling.py needs to build up requests in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

ANSWER = "Hello"  # what every completion says; the benchmark checks it on every path


def completion(model: str) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "finish_reason": "length", "logprobs": None,
                                         "message": {"role": "assistant", "content": ANSWER}}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}}


def chunks(model: str) -> list[dict]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    return [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {"content": ANSWER}, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}]


def make_app(model: str, delay_s: float = 0.0):
    async def read_body(receive) -> bytes:
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(parts)

    async def respond(send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/v1/models":
            return await respond(send, 200, json.dumps(
                {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "stub"}]}).encode())
        if path != "/v1/chat/completions" or scope["method"] != "POST":
            return await respond(send, 404, b'{"error": {"message": "not found", "type": "not_found"}}')
        try:
            request = json.loads(await read_body(receive))
            if not request.get("messages"):
                raise ValueError("messages is required")
        except ValueError as exc:
            body = json.dumps({"error": {"message": str(exc), "type": "invalid_request_error",
                                         "param": None, "code": None}}).encode()
            return await respond(send, 400, body)
        if delay_s:
            await asyncio.sleep(delay_s)
        if not request.get("stream"):
            return await respond(send, 200, json.dumps(completion(model)).encode())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        for chunk in chunks(model):
            await send({"type": "http.response.body", "body": f"data: {json.dumps(chunk)}\n\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="stub")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(make_app(args.model, args.delay_ms / 1000), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools", lifespan="on")


if __name__ == "__main__":
    main()
