"""The floor of any Ray Serve gateway, for loadtests/bench_gateway.py: one FastAPI ingress deployment
that only forwards `POST /{upstream}/v1/chat/completions` to an OpenAI-compatible upstream through
one shared httpx.AsyncClient (streamed answers are passed through as they come). No validation, no
routing, no handle hop. Built from a Serve config:

    import_path: gateway_forwarder:build_app
    args: {upstreams: {stub: "http://127.0.0.1:8101/v1"}, num_cpus: 0.25, max_ongoing_requests: 256}
"""

# No `from __future__ import annotations` here: FastAPI must see `Request` itself, not a string, on a
# Serve ingress class's methods.
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from ray import serve
from starlette.background import BackgroundTask

app = FastAPI()


@serve.ingress(app)
class Forwarder:
    def __init__(self, upstreams: dict[str, str], max_connections: int = 256) -> None:
        self.upstreams = {name: base.rstrip("/") for name, base in upstreams.items()}
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(120.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    @app.get("/health")
    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "upstreams": sorted(self.upstreams)}

    @app.post("/{upstream}/v1/chat/completions")
    async def chat(self, upstream: str, request: Request):
        base = self.upstreams.get(upstream)
        if base is None:
            raise HTTPException(404, f"no upstream {upstream!r}")
        outgoing = self.client.build_request("POST", f"{base}/chat/completions", content=await request.body(),
                                             headers={"content-type": "application/json"})
        answer = await self.client.send(outgoing, stream=True)
        media_type = answer.headers.get("content-type", "application/json")
        if media_type.startswith("text/event-stream"):
            return StreamingResponse(answer.aiter_raw(), status_code=answer.status_code, media_type=media_type,
                                     background=BackgroundTask(answer.aclose))
        try:
            body = await answer.aread()
        finally:
            await answer.aclose()
        return Response(body, status_code=answer.status_code, media_type=media_type)


def build_app(args: dict[str, Any]):
    """`args`: upstreams (name -> base URL with /v1), num_cpus, max_ongoing_requests."""
    return serve.deployment(
        Forwarder, name="forwarder", ray_actor_options={"num_cpus": float(args.get("num_cpus", 0.25))},
        max_ongoing_requests=int(args.get("max_ongoing_requests", 256)),
    ).bind(args["upstreams"])
