"""The HTTP front door: a FastAPI app inside Ray Serve holding a handle per model."""


import logging
import time
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve

from deployments.calls import ChatCall
from graphs.deadline import Deadline
from graphs.health import HealthMonitor
from serve_app import http_errors, sse
from serve_app.config import ModelSpec, SwitchboardConfig
from serve_app.errors import InvalidRequest, ModelNotFound, SwitchboardError
from serve_app.middleware import BodyLimitMiddleware, RequestIdMiddleware
from serve_app.model_client import ModelClient, model_client
from serve_app.schemas.chat import ChatCompletionRequest

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
DEADLINE_HEADER = "x-switchboard-deadline-ms"


def serve_request_id() -> str | None:
    """The id Serve's proxy gave this request, when it did not arrive in a header."""
    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or None
    except Exception:  # outside a replica (tests of the bare app)
        return None


app = FastAPI(
    title="Switchboard",
    version="0.1.0",
    description="Many AI models behind one OpenAI-compatible API, with routing and failover.",
)
app.state.max_body_bytes = 25 * 1024 * 1024
app.add_middleware(BodyLimitMiddleware, limit=lambda: app.state.max_body_bytes)
# Outermost, so a 413 is logged with the id too. Serve's proxies return x-request-id themselves.
app.add_middleware(RequestIdMiddleware, echo=False, fallback=serve_request_id)
http_errors.install(app)


@serve.ingress(app)
class SwitchboardIngress:
    def __init__(self, config: SwitchboardConfig, handles: dict[str, Any]) -> None:
        self._config = config
        self._specs = config.by_name()
        self._clients = {name: model_client(self._specs[name], handle) for name, handle in handles.items()}
        app.state.max_body_bytes = config.limits.max_body_bytes
        self._health = HealthMonitor(
            {name: (self._specs[name].family, client.probe) for name, client in self._clients.items()},
            timeout_s=config.health.probe_timeout_s,
            cache_s=config.health.cache_s,
        )

    # ---- OpenAI-compatible ---------------------------------------------------------------

    @app.get("/v1/models", summary="List the roster's models (OpenAI-compatible)")
    async def list_models(self) -> dict[str, Any]:
        data = [{"id": "auto", "object": "model", "created": 0, "owned_by": "switchboard", "family": "router"}]
        data += [{"id": m.name, "object": "model", "created": 0, "owned_by": "switchboard", "family": m.family}
                 for m in self._config.models]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", summary="Chat completion (OpenAI-compatible, stream or not)")
    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        request_id = http_errors.request_id_of(request)
        deadline = self._deadline(request)
        spec = self._chat_model(body)
        for message in body.messages:
            if message.attachments():
                raise InvalidRequest("image and audio content parts need a vision or speech model; "
                                     "this roster has none", param="messages")
        call = ChatCall(
            request_id=request_id, messages=body.plain_messages(), budget_s=deadline.remaining(),
            max_tokens=body.token_limit(), temperature=body.temperature, top_p=body.top_p,
            stop=body.stop, seed=body.seed,
        )
        headers = {"x-switchboard-model": spec.name}
        started = time.perf_counter()
        client = self._clients[spec.name]
        if body.stream:
            return await self._stream(client, call, deadline, headers, started)
        result = await client.call("chat", call, deadline)
        result["model"] = spec.name
        self._log_done(request_id, spec.name, started, "ok")
        return JSONResponse(result, headers=headers)

    # ---- health ----------------------------------------------------------------------------

    @app.get("/api/health", summary="Deep health: every model dry-runs a tiny input")
    async def health(self):
        report = await self._health.report()
        return JSONResponse(report, status_code=503 if report["status"] == "down" else 200)

    @app.get("/api/health/live", summary="Cheap liveness of the ingress")
    async def live(self) -> dict[str, str]:
        return {"status": "alive"}

    # ---- helpers -----------------------------------------------------------------------------

    def _deadline(self, request: Request) -> Deadline:
        limits = self._config.deadlines
        raw = request.headers.get(DEADLINE_HEADER)
        if raw is None:
            return Deadline(limits.default_ms / 1000)
        try:
            wanted = int(raw)
        except ValueError:
            raise InvalidRequest(f"{DEADLINE_HEADER} must be an integer number of milliseconds",
                                 param=DEADLINE_HEADER) from None
        if wanted <= 0:
            raise InvalidRequest(f"{DEADLINE_HEADER} must be positive", param=DEADLINE_HEADER)
        return Deadline(min(wanted, limits.max_ms) / 1000)

    def _chat_model(self, body: ChatCompletionRequest) -> ModelSpec:
        if body.model == "auto":
            spec = self._config.default_model("llm")
            if spec is None:  # the config validator guarantees one; kept for a clear message
                raise ModelNotFound("no LLM in the roster", param="model")
            return spec
        spec = self._specs.get(body.model)
        if spec is None:
            known = ", ".join(["auto", *self._specs])
            raise ModelNotFound(f"model {body.model!r} does not exist; known models: {known}", param="model")
        if spec.family != "llm":
            raise InvalidRequest(f"model {body.model!r} is a {spec.family} model, not a chat model",
                                 param="model")
        return spec

    async def _stream(self, client: ModelClient, call: ChatCall, deadline: Deadline,
                      headers: dict[str, str], started: float):
        stream = await client.stream("chat_stream", call, deadline)
        try:
            first = await anext(stream)  # an error before the first token is an ordinary HTTP error
        except StopAsyncIteration:
            first = None
        return StreamingResponse(self._relay(stream, first, client.name, call.request_id, started),
                                 media_type="text/event-stream", headers=headers)

    async def _relay(self, stream, first, model: str, request_id: str, started: float) -> AsyncIterator[str]:
        if first is None:
            yield sse.DONE
            return
        chunk_id, created = first.get("id", request_id), first.get("created", int(time.time()))
        outcome = "ok"
        try:
            first["model"] = model
            yield sse.event(first)
            async for chunk in stream:
                chunk["model"] = model
                yield sse.event(chunk)
        except SwitchboardError as err:
            outcome = "error"
            logger.error("stream broke after first token", extra={
                "request_id": request_id, "model": model, "code": err.code, "reason": err.message})
            for line in sse.error_events(err, chunk_id=chunk_id, model=model, created=created):
                yield line
            return
        finally:
            stream.cancel()
            self._log_done(request_id, model, started, outcome)
        yield sse.DONE

    @staticmethod
    def _log_done(request_id: str, model: str, started: float, outcome: str) -> None:
        logger.info("request done", extra={"request_id": request_id, "model": model, "outcome": outcome,
                                           "latency_ms": round((time.perf_counter() - started) * 1000, 2)})


__all__ = ["SwitchboardIngress", "app"]
