"""The HTTP front door: a FastAPI app inside Ray Serve holding a handle per model.

Routes parse HTTP and hand over to the services (serve_app/services), which hold the logic.
"""

import asyncio
import base64
import logging
import os
import time
from datetime import datetime, timezone
from functools import partial
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from pydantic import ValidationError
from ray import serve

from graphs.deadline import Deadline
from graphs.breaker import BreakerState
from graphs.faults import Fault
from graphs.health import HealthMonitor, public_view, with_deployment_reasons
from serve_app import http_errors, sse
from serve_app.auth import check_admin
from serve_app.chat_relay import relay
from serve_app.client_keys import ClientKeyMiddleware, load_keys
from serve_app.flags.in_force import FlagsInForce, start_flags
from serve_app.shadowing import ShadowRunner, answer_text
from serve_app.shared_state.follower import BoardFollower, board_connector, fingerprint
from serve_app.in_process_client import InProcessModelClient
from serve_app.llm_server_client import model_clients
from serve_app.media.audio import SPEECH_FORMATS
from serve_app.media.pool import MediaPool
from serve_app.metrics import IngressMetrics
from serve_app.middleware import BodyLimitMiddleware, RequestIdMiddleware
from serve_app.request_log.middleware import RequestLogMiddleware
from serve_app.request_log.reader import contains
from serve_app.request_log.writer import RequestLog
from serve_app.schemas.feedback import FeedbackRequest, FeedbackResponse
from serve_app.schemas.audio import (
    CloneResponse,
    CommitteeRequest,
    CommitteeResponse,
    SearchRequest,
    SearchResponse,
    SpeechFormat,
    SpeechRequest,
    TranscriptFormat,
    TranscriptResponse,
    TTSRequest,
    VisionResponse,
)
from serve_app.schemas.chat import ChatCompletionRequest, ErrorResponse
from serve_app.schemas.embeddings import EmbeddingRequest, EmbeddingResponse
from serve_app.serve_status import deployment_names, serve_reasons
from serve_app.schemas.text import Text
from serve_app.services import transcript_formats
from serve_app.services.audio import AudioService
from serve_app.services.chat import ChatService, route_summary
from serve_app.services.committee import CommitteeService
from serve_app.services.context import RequestContext
from serve_app.services.embeddings import EmbeddingService
from serve_app.services.roster import Roster
from serve_app.services.router import ROUTER, RouterService
from serve_app.services.search import SearchService
from serve_app.services.vision import VisionService
from vocabulary.config import SwitchboardConfig
from vocabulary.errors import (
    InvalidRequest,
    ModelNotFound,
    NotFound,
    ServiceUnavailable,
)
from vocabulary.resilience_config import FaultSpec

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
DEADLINE_HEADER = "x-switchboard-deadline-ms"
SESSION_HEADER = "x-session-id"  # what canaries split on, so a session stays on its variant


def admin_only(request: Request) -> None:
    """A dependency of every admin endpoint: checked before the body is read or validated."""
    check_admin(request.headers.get("authorization"))


REPLICA_HEADER = "x-switchboard-replica"


def replica_header(response: Response) -> None:
    """Which ingress replica answered (admin and flags views: each replica holds its own copy)."""
    response.headers[REPLICA_HEADER] = replica_name()


ADMIN_ONLY = [Depends(admin_only), Depends(replica_header)]


def serve_request_id() -> str | None:
    """The id Serve's proxy gave this request, when it did not arrive in a header."""
    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or None
    except Exception:  # outside a replica (tests of the bare app)
        return None


ERROR_RESPONSES = {status: {"model": ErrorResponse, "description": what} for status, what in {
    400: "Bad input", 401: "Missing or wrong admin token", 404: "Unknown model or route", 413: "Too large",
    415: "Unsupported media type", 503: "No model of the route could answer", 504: "The request's deadline passed",
}.items()}

SPEECH_RESPONSES = {200: {"description": "The audio, in the format asked for",
                         "content": {mime: {} for _, _, mime in SPEECH_FORMATS.values()}}}

app = FastAPI(
    title="Switchboard",
    version="0.1.0",
    description="Many AI models behind one OpenAI-compatible API, with routing and failover.",
    responses=ERROR_RESPONSES,
)
app.state.max_body_bytes = 25 * 1024 * 1024
app.state.max_body_bytes_in_flight = 256 * 1024 * 1024
app.state.request_log = None
app.state.on_line = None
app.state.client_keys = None
app.add_middleware(BodyLimitMiddleware, limit=lambda: app.state.max_body_bytes,
                   in_flight=lambda: app.state.max_body_bytes_in_flight)
# Before any body is read, inside the request log: a refused key or a 429 gets its line.
app.add_middleware(ClientKeyMiddleware, keys=lambda: app.state.client_keys)
# Around everything but the request id: every request, whatever its end (a 413 too), gets its line.
app.add_middleware(RequestLogMiddleware, log=lambda: app.state.request_log,
                   on_line=lambda line: app.state.on_line(line) if app.state.on_line else None)
# Outermost, so a 413 is logged with the id too. Serve's proxies return x-request-id themselves.
app.add_middleware(RequestIdMiddleware, echo=False, fallback=serve_request_id)
http_errors.install(app)


def serve_app_name() -> str | None:
    """The Serve application this replica belongs to; None outside Serve."""
    try:
        return serve.get_replica_context().app_name
    except Exception:
        return None


def replica_name() -> str:
    """This replica's id (one log file each), or the process id outside Serve."""
    try:
        context = serve.get_replica_context()
        tag = getattr(getattr(context, "replica_id", None), "unique_id", None) or getattr(context, "replica_tag", "")
        return f"{context.deployment}-{tag}"
    except Exception:
        return f"pid{os.getpid()}"


def _last_user_text(messages: list[Any]) -> str | None:
    for message in reversed(messages or ()):
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return None


@serve.ingress(app)
class SwitchboardIngress:
    async def __init__(self, config: SwitchboardConfig, handles: dict[str, Any], router_handle=None) -> None:
        self._config = config
        specs = config.by_name()
        clients = await model_clients(specs, handles)
        await asyncio.gather(*(client.warm() for client in clients.values()))
        self._metrics = IngressMetrics(models=[*clients, "llm_only", ROUTER, "vision", "stt", "search", "text"])
        if config.request_log.enabled:
            log = RequestLog(config.request_log, replica_name())
            await asyncio.to_thread(log.start)
            app.state.request_log = log
            app.state.on_line = self._metrics.observe
        self._board: BoardFollower | None = None
        self._roster = Roster(config, clients, on_breaker_change=self._breaker_changed,
                              on_breaker_failure=self._breaker_failed)
        self._flags = start_flags(config)
        if self._flags is not None:
            self._roster.switches = self._flags.switches
            self._roster.faults.flagged = self._flags.switches.fault
        app_name = serve_app_name()
        if config.ingress.share_state and app_name is not None:
            flags = self._flags
            self._board = BoardFollower(self._roster, replica_name(), fingerprint(config), board_connector(app_name),
                                        adopt_flags=(lambda body: asyncio.to_thread(flags.adopt, body)) if flags else None)
            await self._board.start()
        self._shadow = ShadowRunner(self._roster, config.shadow, self._shadow_line)
        self._router = RouterService(config.router, self._roster, router_handle)
        await self._router.start()
        media = MediaPool()  # decodes, checks and encodes run here, off the event loop
        self._audio = AudioService(self._roster, media)
        self._vision = VisionService(self._roster, media)
        self._search = SearchService(self._roster)
        self._embeddings = EmbeddingService(self._router, config.limits, media)
        self._committee = CommitteeService(self._roster, self._audio, self._vision)
        self._chat = ChatService(self._roster, self._router, self._audio, self._vision, self._search,
                                 self._committee)
        app.state.max_body_bytes = config.limits.max_body_bytes
        app.state.client_keys = load_keys(config.client_keys)
        app.state.max_body_bytes_in_flight = config.limits.max_body_bytes_in_flight
        probes = {name: (specs[name].family, partial(self._roster.probe, name)) for name in clients}
        probes["router"] = ("router", self._router.probe)
        self._health = HealthMonitor(probes, timeout_s=config.health.probe_timeout_s, cache_s=config.health.cache_s)

    async def __del__(self) -> None:
        """Serve calls it when the replica stops: the models placed in it close their connections."""
        roster = getattr(self, "_roster", None)
        closing = [client.close() for client in (roster.clients.values() if roster else ())
                   if isinstance(client, InProcessModelClient)]
        if closing:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout=5)

    def _breaker_changed(self, model: str, old, new) -> None:
        self._metrics.breaker_changed(model, old, new)
        if self._board is not None:
            self._board.breaker_changed(model, old, new)

    def _breaker_failed(self, model: str) -> None:
        if self._board is not None:
            self._board.failure_counted(model)

    # ---- OpenAI-compatible ---------------------------------------------------------------

    @app.get("/v1/models", summary="List the roster's models (OpenAI-compatible), with what each LLM can do")
    async def list_models(self) -> dict[str, Any]:
        data = [{"id": "auto", "object": "model", "created": 0, "owned_by": "switchboard", "family": "router"}]
        data += [{"id": m.name, "object": "model", "created": 0, "owned_by": "switchboard", "family": m.family,
                  **({"capabilities": self._roster.caps[m.name].model_dump()} if m.family == "llm" else {})}
                 for m in self._config.models]
        data += [{"id": name, "object": "model", "created": 0, "owned_by": "switchboard", "family": "embedding"}
                 for name in self._embeddings.models()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", summary="Chat completion (OpenAI-compatible, stream or not)",
              responses={200: {"description": "A chat.completion, or with stream: true server-sent events of "
                                              "chat.completion.chunk", "content": {"application/json": {},
                                                                                   "text/event-stream": {}}}})
    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        started = time.perf_counter()
        ctx = self._context(request, self._router.features(body).text)
        prepared = await self._chat.prepare(body, ctx)
        if prepared.committee is not None:
            return await self._committee_chat(body, prepared, ctx)
        headers = self._ignored(body, ctx)
        shadow = self._shadow.model_for("text", ctx)

        def shadow_job(text: str):
            return self._chat.shadow_job(body, prepared, ctx, shadow, text,
                                         round((time.perf_counter() - started) * 1000, 2))

        if body.stream:
            opened, chain = await self._chat.open_stream(body, prepared, ctx)
            done = (lambda state: self._shadow.offer(shadow_job(state.first_text()))) if shadow else None
            return StreamingResponse(relay(self._chat, body, prepared, opened, chain, ctx, done),
                                     media_type="text/event-stream", headers={**ctx.headers(), **headers})
        result = await self._chat.complete(body, prepared, ctx)
        result["switchboard"] = {**ctx.summary(), "route": prepared.decision.as_dict(),
                                 "attachments": prepared.reports}
        # The shadow's job is handed over once the answer is sent (a background task of the response).
        later = BackgroundTask(self._shadow.hand_over, shadow_job(answer_text(result))) if shadow else None
        return JSONResponse(result, headers={**ctx.headers(), **headers}, background=later)

    @app.post("/api/committee", summary="Ask several models at once (parallel, under the deadline), merge, "
                                        "and let the LLM answer", response_model=CommitteeResponse)
    async def committee(self, body: CommitteeRequest, request: Request):
        ctx = self._context(request, _last_user_text(body.messages))
        if body.deadline_ms is not None:
            ctx.deadline = Deadline(min(body.deadline_ms, self._config.deadlines.max_ms) / 1000)
        try:
            chat_body = ChatCompletionRequest.model_validate({"messages": body.messages, "max_tokens": body.max_tokens})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRequest(f"messages: {first['msg']}", param="messages") from None
        report = await self._committee.run(chat_body, ctx, names=body.members, mode=body.mode)
        return JSONResponse({"answer": report["answer"], "degraded": report["degraded"] or ctx.degraded,
                             "agreement": report.get("agreement"), "uncertain": report.get("uncertain"),
                             "members": report["members"], "members_wall_ms": report["members_wall_ms"],
                             "merged": report["merged"],
                             "switchboard": ctx.summary()}, headers=ctx.headers())

    @staticmethod
    def _ignored(body: ChatCompletionRequest, ctx: RequestContext) -> dict[str, str]:
        """Fields outside OpenAI's chat API: named in a header and logged, never silently dropped;
        OpenAI's informational fields (user, metadata) are logged."""
        ignored = body.ignored()
        if ignored or body.user or body.metadata:
            logger.info("chat request fields", extra={"request_id": ctx.request_id, "ignored": ignored,
                                                      "user": body.user, "metadata": body.metadata})
        return {"x-switchboard-ignored": ",".join(ignored)} if ignored else {}

    async def _committee_chat(self, body: ChatCompletionRequest, prepared, ctx: RequestContext):
        report = await self._committee.run(body, ctx, intents=prepared.committee)
        completion = {"id": f"chatcmpl-{ctx.request_id}", "object": "chat.completion", "created": int(time.time()),
                      "model": ctx.models[-1] if ctx.models else "committee",
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": report["answer"]},
                                   "finish_reason": "stop"}]}
        if body.stream:
            chunk = {**completion, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": report["answer"]},
                                  "finish_reason": "stop"}]}
            return StreamingResponse(iter([sse.event(chunk), sse.DONE]), media_type="text/event-stream",
                                     headers=ctx.headers())
        completion["switchboard"] = {**ctx.summary(), "route": prepared.decision.as_dict(), "committee": report}
        return JSONResponse(completion, headers=ctx.headers())

    @app.post("/api/classify", summary="The switchboard's routing decision for a chat body; calls no model "
                                       "but the router")
    async def classify(self, body: ChatCompletionRequest, request: Request) -> dict[str, Any]:
        ctx = self._context(request, self._router.features(body).text)
        decision = await self._router.decide(body, ctx)
        ctx.intent, ctx.route = decision.intent, route_summary(decision)
        return decision.as_dict()

    @app.post("/v1/audio/transcriptions", summary="Speech to text (OpenAI-compatible)")
    async def transcriptions(
        self, request: Request,
        file: Annotated[UploadFile, File(description="Audio: wav, mp3, flac, ogg, webm or m4a.")],
        model: Annotated[Text, Form()] = "whisper-1",
        language: Annotated[Text | None, Form(max_length=16)] = None,
        prompt: Annotated[Text | None, Form(max_length=2000)] = None,
        response_format: Annotated[TranscriptFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0, le=1)] = 0.0,
    ):
        ctx = self._context(request)
        audio = await self._audio.decode(await file.read())
        ctx.facts = ctx.facts.with_audio(audio.duration_s)
        result = await self._audio.transcribe(audio, ctx, model=model, language=language, prompt=prompt,
                                              temperature=temperature)
        return transcript_formats.render(result, response_format, ctx.headers())

    @app.post("/v1/audio/translations", summary="Speech in any language to English text (OpenAI-compatible)")
    async def translations(
        self, request: Request,
        file: Annotated[UploadFile, File(description="Audio: wav, mp3, flac, ogg, webm or m4a.")],
        model: Annotated[Text, Form()] = "whisper-1",
        prompt: Annotated[Text | None, Form(max_length=2000, description="English text to guide the style.")] = None,
        response_format: Annotated[TranscriptFormat, Form()] = "json",
        temperature: Annotated[float, Form(ge=0, le=1)] = 0.0,
    ):
        ctx = self._context(request)
        audio = await self._audio.decode(await file.read())
        ctx.facts = ctx.facts.with_audio(audio.duration_s)
        result = await self._audio.transcribe(audio, ctx, model=model, prompt=prompt, temperature=temperature,
                                              task="translate")
        return transcript_formats.render(result, response_format, ctx.headers())

    @app.post("/v1/audio/speech", summary="Text to speech (OpenAI-compatible)",
              response_class=Response, responses=SPEECH_RESPONSES)
    async def speech(self, body: SpeechRequest, request: Request):
        ctx = self._context(request, body.input)
        speech = await self._audio.speak(body.input, body.voice, body.speed, ctx, model=body.model)
        return await self._audio_response(speech, body.response_format, ctx)

    @app.post("/v1/embeddings", summary="Sentence embeddings (OpenAI-compatible), from the router's encoder",
              response_model=EmbeddingResponse)
    async def embeddings(self, body: EmbeddingRequest, request: Request):
        ctx = self._context(request, body.input if isinstance(body.input, str) else None)
        content = await self._embeddings.embed(body, ctx)
        return Response(content, media_type="application/json", headers=ctx.headers())

    # ---- native endpoints ----------------------------------------------------------------------

    @app.post("/api/voice/stt", summary="Speech to text with segments and confidences",
              response_model=TranscriptResponse)
    async def stt(self, request: Request, file: Annotated[UploadFile, File()],
                  language: Annotated[Text | None, Form(max_length=16)] = None,
                  model: Annotated[Text, Form()] = "auto"):
        ctx = self._context(request)
        audio = await self._audio.decode(await file.read())
        ctx.facts = ctx.facts.with_audio(audio.duration_s)
        result = await self._audio.transcribe(audio, ctx, model=model, language=language)
        return JSONResponse({**result, "switchboard": ctx.summary()}, headers=ctx.headers())

    @app.post("/api/voice/tts", summary="Text to speech", response_class=Response, responses=SPEECH_RESPONSES)
    async def tts(self, body: TTSRequest, request: Request):
        ctx = self._context(request, body.text)
        speech = await self._audio.speak(body.text, body.voice, body.speed, ctx, model=body.model)
        return await self._audio_response(speech, body.format, ctx)

    @app.post("/api/voice/clone", summary="Speak text in the voice of a reference recording",
              response_model=CloneResponse)
    async def clone(self, request: Request, text: Annotated[Text, Form(min_length=1)],
                    reference: Annotated[UploadFile, File(description="A few seconds of the voice to clone.")],
                    reference_text: Annotated[Text | None, Form(max_length=2000)] = None,
                    format: Annotated[SpeechFormat, Form()] = "wav"):
        ctx = self._context(request, text)
        ref = await self._audio.decode(await reference.read(), param="reference")
        speech = await self._audio.clone(text, ref, reference_text, ctx)
        audio, _ = await self._audio.encode(speech, format)
        headers = {**ctx.headers(), "x-switchboard-cloned": "true" if speech.cloned else "false"}
        return JSONResponse({"audio": base64.b64encode(audio).decode(), "format": format,
                             "sample_rate": speech.sample_rate, "cloned": speech.cloned, "model": speech.model,
                             "switchboard": ctx.summary()}, headers=headers)

    @app.post("/api/vision", summary="Read the text in an image (lines, boxes, confidences)",
              response_model=VisionResponse)
    async def vision(self, request: Request,
                     file: Annotated[UploadFile | None, File(description="The image (png, jpeg, webp, ...).")] = None,
                     image_url: Annotated[Text | None, Form(description="Or an http(s)/data: URL.")] = None,
                     model: Annotated[Text, Form()] = "auto"):
        ctx = self._context(request)
        if (file is None) == (image_url is None):
            raise InvalidRequest("send exactly one of 'file' or 'image_url'", param="file")
        if file is not None:
            image = await file.read()
            await self._vision.check(image, param="file", ctx=ctx)
        else:
            image = await self._vision.load(image_url, ctx, param="image_url")
        result = await self._vision.read(image, ctx, model=model)
        return JSONResponse({**result, "switchboard": ctx.summary()}, headers=ctx.headers())

    @app.post("/api/search", summary="Web search, with a local index when the web cannot answer",
              response_model=SearchResponse)
    async def search(self, body: SearchRequest, request: Request):
        ctx = self._context(request, body.query)
        result = await self._search.search(body.query, body.max_results, ctx, model=body.model)
        return JSONResponse({**result, "switchboard": ctx.summary()}, headers=ctx.headers())

    # ---- feedback ----------------------------------------------------------------------------

    @app.post("/api/feedback", summary="Thumbs up or down on an answer, with a correction (route or model)",
              response_model=FeedbackResponse)
    async def feedback(self, body: FeedbackRequest, request: Request):
        self._context(request)
        log = app.state.request_log
        if log is None:
            raise ServiceUnavailable("the request log is off (request_log.enabled): feedback has nowhere to go",
                                     code="request_log_off")
        correction = body.correction.model_dump(exclude_none=True) if body.correction else None
        if correction and "model" in correction and correction["model"] not in self._roster.specs:
            raise InvalidRequest(f"correction.model: {correction['model']!r} is not a model of this roster",
                                 param="correction.model")
        if not (log.knows(body.request_id) or await asyncio.to_thread(contains, log.dir, body.request_id)):
            raise NotFound(f"no request with id {body.request_id!r} is in the request log", param="request_id",
                           code="unknown_request_id")
        comment = (await asyncio.to_thread(log.redact_now, body.comment))[0] if body.comment else None
        entry = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "request_id": body.request_id,
                 "rating": body.rating, "correction": correction or None, "comment": comment}
        await asyncio.to_thread(log.append_feedback, entry)
        self._metrics.feedback(body.rating, bool(correction))
        return JSONResponse({"stored": True, "request_id": body.request_id})

    # ---- health ----------------------------------------------------------------------------

    @app.get("/api/health", summary="Deep health: every model dry-runs a tiny input")
    async def health(self):
        report = await self._health_report()
        return JSONResponse(public_view(report), status_code=503 if report["status"] == "down" else 200,
                            headers={REPLICA_HEADER: replica_name()})

    @app.get("/api/admin/health", dependencies=ADMIN_ONLY,
             summary="Deep health with each failing model's error and Serve's reason")
    async def admin_health(self):
        report = await self._health_report()
        shared = {"shared_state": self._board.view() if self._board is not None else None}
        return JSONResponse({**report, **shared}, status_code=503 if report["status"] == "down" else 200,
                            headers={REPLICA_HEADER: replica_name()})

    async def _health_report(self) -> dict[str, Any]:
        report = await self._health.report()
        # A model that fails its probe: ask Serve why (its deployment may have failed to start).
        failing = {model: deployment for model, deployment in deployment_names(self._config).items()
                   if report["models"].get(model, {}).get("status", "ok") != "ok"}
        report = with_deployment_reasons(report, await serve_reasons(failing))
        breakers = self._roster.breakers
        models = {name: {**entry, **({"breaker": breakers[name].state.value,
                                      "failures_in_window": breakers[name].failures_in_window()}
                                     if name in breakers else {})}
                  for name, entry in report["models"].items()}
        return {**report, "models": models}

    # ---- fault injection ------------------------------------------------------------------------

    @app.put("/api/admin/faults/{model}", dependencies=ADMIN_ONLY,
             summary="Inject a fault into a model (needs the admin token)")
    async def set_fault(self, model: str, body: FaultSpec, request: Request) -> dict[str, Any]:
        self._fault_target(model)
        self._roster.faults.set(model, Fault(**body.model_dump()))
        shared = await self._board.set_fault(model, body.model_dump()) if self._board is not None else False
        logger.warning("fault injected", extra={"model": model, "fault": body.model_dump(), "shared": shared,
                                                 "request_id": http_errors.request_id_of(request)})
        return {"model": model, "fault": body.model_dump(), "shared": shared}

    @app.delete("/api/admin/faults/{model}", dependencies=ADMIN_ONLY, summary="Clear a model's injected fault")
    async def clear_fault(self, model: str, request: Request) -> dict[str, Any]:
        self._fault_target(model)
        self._roster.faults.clear(model)
        shared = await self._board.set_fault(model, None) if self._board is not None else False
        logger.warning("fault cleared", extra={"model": model, "shared": shared,
                                               "request_id": http_errors.request_id_of(request)})
        return {"model": model, "fault": None, "shared": shared}

    @app.get("/api/admin/breakers", dependencies=ADMIN_ONLY,
             summary="Every breaker's state, without probing anything")
    async def list_breakers(self) -> dict[str, Any]:
        return {name: {"breaker": b.state.value, "failures_in_window": b.failures_in_window()}
                for name, b in self._roster.breakers.items()}

    @app.post("/api/admin/breakers/{model}/reset", dependencies=ADMIN_ONLY,
              summary="Close a model's circuit breaker by hand")
    async def reset_breaker(self, model: str) -> dict[str, Any]:
        if model not in self._roster.breakers:
            raise ModelNotFound(f"model {model!r} does not exist", param="model")
        self._roster.breakers[model].reset()
        if self._board is not None:  # closed on every replica, even where this one was already closed
            self._board.breaker_changed(model, BreakerState.OPEN, BreakerState.CLOSED)
        return {"model": model, "breaker": self._roster.breakers[model].state.value}

    @app.get("/api/admin/models/{model}/stats", dependencies=ADMIN_ONLY,
             summary="What one replica of a model is working on now")
    async def model_stats(self, model: str) -> dict[str, Any]:
        if model not in self._roster.clients:
            raise ModelNotFound(f"model {model!r} does not exist", param="model")
        return await self._roster.clients[model].call("stats", None, Deadline(5.0))

    @app.get("/api/admin/faults", dependencies=ADMIN_ONLY, summary="The faults in force")
    async def list_faults(self) -> dict[str, Any]:
        return {name: vars(f) for name, f in self._roster.faults.all([*self._roster.clients, ROUTER]).items()}

    def _fault_target(self, model: str) -> None:
        if model not in self._roster.clients and model != ROUTER:
            raise ModelNotFound(f"model {model!r} does not exist (faults go to a roster model or {ROUTER!r})",
                                param="model")

    @app.get("/api/flags", summary="The feature flags in force (OpenFeature, from the flags file)",
             dependencies=[Depends(replica_header)])
    async def get_flags(self) -> dict[str, Any]:
        return self._require_flags().view()

    @app.put("/api/flags", dependencies=ADMIN_ONLY,
             summary="Replace the flags file (needs the admin token); every replica reads it within "
                     "its poll interval")
    async def put_flags(self, request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        flags = self._require_flags()
        await asyncio.to_thread(flags.write, body)
        if self._board is not None:
            await self._board.set_flags(body)
        return flags.view()

    def _shadow_line(self, entry: dict[str, Any]) -> None:
        """A shadow comparison: counted, and written beside the request log when there is one."""
        self._metrics.shadow(entry)
        if app.state.request_log is not None:
            app.state.request_log.append_shadow(entry)

    def _require_flags(self) -> "FlagsInForce":
        if self._flags is None:
            raise NotFound("feature flags are off: set flags.file in the config")
        return self._flags

    @app.get("/api/health/live", summary="Cheap liveness of the ingress")
    async def live(self) -> dict[str, str]:
        return {"status": "alive"}

    # ---- helpers -----------------------------------------------------------------------------

    def _context(self, request: Request, text: str | None = None) -> RequestContext:
        """The request's context, tied to its log record; the user's text (if any) starts being
        redacted for the log's excerpt at once, while the models work."""
        ctx = RequestContext(http_errors.request_id_of(request), self._deadline(request))
        client = getattr(getattr(request.state, "record", None), "client", None)
        ctx.targeting_key = (request.headers.get(SESSION_HEADER) or (client or {}).get("key")
                             or ctx.request_id)[:256]
        if text:
            ctx.learn(text=text)
        record = getattr(request.state, "record", None)
        if record is not None:
            record.ctx = ctx
            if text and app.state.request_log is not None:
                app.state.request_log.redact_later(record, text)
        return ctx

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

    async def _audio_response(self, speech, fmt: str, ctx: RequestContext) -> Response:
        audio, mime = await self._audio.encode(speech, fmt)
        headers = {**ctx.headers(), "x-switchboard-voice": speech.voice,
                   "x-switchboard-sample-rate": str(speech.sample_rate)}
        return Response(audio, media_type=mime, headers=headers)


__all__ = ["SwitchboardIngress", "app"]
