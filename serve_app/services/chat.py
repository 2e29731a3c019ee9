"""Chat completions through the switchboard: route the request (attachments, named model, then
the classifier), do what the intent needs first (read images, transcribe audio, search), hand
the results to the LLM with the user's words, and speak the answer when voice was asked for."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from graphs.blame import Attempt
from graphs.failover import ChainExhausted, ChainResult
from graphs.routing import RouteDecision
from serve_app.media.audio import DecodedAudio
from serve_app.schemas.chat import AudioPart, ChatCompletionRequest, ImagePart, TextPart
from serve_app.services.audio import AudioService
from serve_app.services.committee import CommitteeService
from serve_app.shadowing import ShadowJob
from serve_app.services.context import RequestContext
from serve_app.services.media_budget import check_part_counts
from serve_app.services.request_facts import chat_facts
from serve_app.services.roster import OpenChat, Roster, exhausted
from serve_app.services.router import RouterService
from serve_app.services.search import SearchService
from serve_app.services.vision import VisionService
from vocabulary.calls import ChatCall
from vocabulary.capabilities import request_needs
from vocabulary.chat_chunks import merge_choices
from vocabulary.tool_schema import check_tools
from vocabulary.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ServiceUnavailable,
    SwitchboardError,
)

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)
MAX_URL_IMAGES = 2


@dataclass
class PreparedChat:
    decision: RouteDecision
    chain: list[str]
    messages: list[dict]
    reports: list[dict] = field(default_factory=list)
    speak: bool = False
    committee: list[str] | None = None  # set when the committee answers: the intents it asks


class ChatService:
    def __init__(self, roster: Roster, router: RouterService, audio: AudioService, vision: VisionService,
                 search: SearchService, committee: CommitteeService) -> None:
        self._roster = roster
        self._committee = committee
        self._router = router
        self._audio = audio
        self._vision = vision
        self._search = search

    async def prepare(self, body: ChatCompletionRequest, ctx: RequestContext) -> PreparedChat:
        limit = self._roster.config.limits.max_messages
        if len(body.messages) > limit:
            raise InvalidRequest(f"{len(body.messages)} messages, over the limit of {limit}", param="messages")
        refused = body.unsupported()
        if refused:
            raise InvalidRequest(refused[1], param=refused[0], code="unsupported_parameter")
        if body.stream and body.wants_audio():
            raise InvalidRequest("a spoken answer (modalities with 'audio', or 'audio') is not streamed here; "
                                 "ask without stream", param="modalities", code="unsupported_parameter")
        if body.tools is not None or body.tool_choice is not None:
            check_tools(body.tools, body.tool_choice, body.parallel_tool_calls)
        schemas = [(tool["function"].get("parameters"), f"tools[{i}].function.parameters")
                   for i, tool in enumerate(body.tools or ())]
        if body.response_format and body.response_format.json_schema:
            schemas.append((body.response_format.json_schema.schema_, "response_format.json_schema.schema"))
        if any(schema is not None for schema, _ in schemas):
            await asyncio.to_thread(_check_schemas, schemas)
        parts = [p for m in body.messages for p in m.attachments()]
        check_part_counts(parts, self._roster.config.media)
        decision = await self._router.decide(body, ctx)
        ctx.intent = decision.intent
        ctx.learn(intent=decision.intent, **chat_facts(body))
        ctx.route = route_summary(decision)
        ctx.attachments = {"images": sum(isinstance(p, ImagePart) for p in parts),
                           "audio": sum(isinstance(p, AudioPart) for p in parts), "image": None, "audio_seconds": None}
        named = self._roster.specs.get(body.model)
        chain = self._roster.chain("llm", body.model if named is None or named.family == "llm" else "auto", ctx=ctx)
        fmt = body.response_format.as_call() if body.response_format else None
        history = any(m.tool_calls or m.role == "tool" for m in body.messages)
        needs = request_needs(fmt, body.tools, body.tool_choice, body.logprobs, tool_history=history)
        chain = self._roster.capable(chain, needs)
        plain = not needs and (body.n or 1) == 1
        committee = self._committee_intents(body, decision) if plain else None
        if committee is not None:
            return PreparedChat(decision, chain, [], committee=committee)
        family_model = body.model if named is not None and named.family != "llm" else None
        prepared = PreparedChat(decision, chain, [])
        media = await self._load_media(body, ctx)  # every part decoded and counted before a model reads one
        for i, message in enumerate(body.messages):
            role = "system" if message.role == "developer" else message.role
            if not isinstance(message.content, list):
                prepared.messages.append(_plain_message(role, message))
                continue
            parts = []
            for j, part in enumerate(message.content):
                param = f"messages.{i}.content.{j}"
                if isinstance(part, TextPart):
                    parts.append(part.text)
                elif isinstance(part, ImagePart):
                    parts.append(await self._read_image(media[(i, j)], ctx, prepared.reports, family_model))
                elif isinstance(part, AudioPart):
                    parts.append(await self._hear_audio(media[(i, j)], ctx, prepared.reports))
            prepared.messages.append({**_plain_message(role, message), "content": "\n\n".join(p for p in parts if p)})
        attached = bool(prepared.reports)
        if decision.intent == "vision" and not attached:
            await self._images_from_text(body, prepared, ctx, family_model)
        elif decision.intent == "search":
            await self._search_first(body, prepared, ctx, family_model)
        # Audio only when asked: the voice intent alone changes nothing for a text client.
        prepared.speak = body.wants_audio()
        if ctx.notes:
            prepared.messages.insert(0, {"role": "system", "content": "Some of what was asked could not be done: "
                                         + "; ".join(ctx.notes) + ". Say so plainly, then help as well as you can."})
        return prepared

    def _committee_intents(self, body: ChatCompletionRequest, decision: RouteDecision) -> list[str] | None:
        """When the committee answers: image and audio together (always: that is how both are read), or
        two intents too close to call, unless the committee is turned off by its flag."""
        parts = [p for m in body.messages for p in m.attachments()]
        if any(isinstance(p, ImagePart) for p in parts) and any(isinstance(p, AudioPart) for p in parts):
            return []
        if decision.classifier in ("attachment", "model", "empty") or body.stream:
            return None
        if not self._roster.switches.committee_on():
            return None
        top = sorted(decision.scores.items(), key=lambda kv: kv[1], reverse=True)[:2]
        margin = self._roster.config.committee.margin
        if len(top) == 2 and top[0][1] - top[1][1] <= margin and {top[0][0], top[1][0]} == {"search", "text"}:
            return [top[0][0], top[1][0]]
        return None

    async def _read_image(self, data: bytes, ctx: RequestContext, reports: list[dict], model: str | None) -> str:
        n = sum(r["type"] == "image" for r in reports) + 1
        cross_check = model is None and self._committee.spec.vision_cross_check and \
            len(self._committee.vision_models()) >= 2
        try:
            result = await (self._committee.cross_read(data, ctx) if cross_check else
                            self._vision.read(data, ctx, model=model, tail=self._tail("vision")))
        except (ServiceUnavailable, DeadlineExceeded) as exc:
            ctx.notes.append(f"I could not read image {n}")
            reports.append({"type": "image", "model": None, "error": exc.message})
            return f"[Image {n}: it could not be read]"
        report = {"type": "image", "model": result["model"], "text": result["text"]}
        if "agreement" in result:
            report.update(agreement=result["agreement"], uncertain=result["uncertain"])
        reports.append(report)
        text = result["text"] or "(no text found)"
        return f"[Image {n}, the text on it as read by OCR:]\n{text}\n[End of image {n}]"

    async def _load_media(self, body: ChatCompletionRequest, ctx: RequestContext) -> dict[tuple[int, int], Any]:
        """(message, part) -> the image's bytes or the decoded audio, each checked and counted against
        the request's media limits (serve_app/services/media_budget.py)."""
        loaded: dict[tuple[int, int], Any] = {}
        for i, message in enumerate(body.messages):
            for j, part in enumerate(message.content if isinstance(message.content, list) else ()):
                param = f"messages.{i}.content.{j}"
                if isinstance(part, ImagePart):
                    loaded[(i, j)] = await self._vision.load(part.image_url.url, ctx, param=f"{param}.image_url.url")
                elif isinstance(part, AudioPart):
                    loaded[(i, j)] = await self._audio.decode_part(part.input_audio.data, f"{param}.input_audio.data",
                                                                   ctx)
        return loaded

    async def _hear_audio(self, audio: DecodedAudio, ctx: RequestContext, reports: list[dict]) -> str:
        n = sum(r["type"] == "audio" for r in reports) + 1
        try:
            result = await self._audio.transcribe(audio, ctx, tail=self._tail("stt"))
        except (ServiceUnavailable, DeadlineExceeded) as exc:
            ctx.notes.append(f"I could not transcribe audio {n}")
            reports.append({"type": "audio", "model": None, "error": exc.message})
            return f"[Audio {n}: it could not be transcribed]"
        reports.append({"type": "audio", "model": result["model"], "transcript": result["text"],
                        "confidence": result["confidence"], "untrusted": result["untrusted"]})
        heard = (f"transcript (low confidence {result['confidence']:.2f}: words may be misheard, say so if "
                 "it matters)" if result["untrusted"] else "transcript")
        return f"[Audio {n}, {heard}:]\n{result['text'] or '(no speech found)'}\n[End of audio {n}]"

    async def _images_from_text(self, body: ChatCompletionRequest, prepared: PreparedChat, ctx: RequestContext,
                                model: str | None) -> None:
        """A vision request without an image part: look at the image URLs in the user's text."""
        urls = _URL.findall(self._router.features(body).text)[:MAX_URL_IMAGES]
        if not urls:
            ctx.notes.append("I could not find an image to look at")
            return
        readings = []
        for url in urls:
            try:
                data = await self._vision.load(url, ctx, param="messages")
            except SwitchboardError as exc:
                ctx.notes.append(f"I could not fetch the image at {url} ({exc.message})")
                continue
            readings.append(await self._read_image(data, ctx, prepared.reports, model))
        if readings:
            prepared.messages.insert(len(prepared.messages) - 1, {"role": "system", "content": "\n\n".join(readings)})

    async def _search_first(self, body: ChatCompletionRequest, prepared: PreparedChat, ctx: RequestContext,
                            model: str | None) -> None:
        query = self._router.features(body).text.strip()[:300]
        try:
            found = await self._search.search(query, 5, ctx, model=model, tail=self._tail("search"))
        except (ServiceUnavailable, DeadlineExceeded):
            ctx.notes.append("I could not search for current information")
            return
        prepared.reports.append({"type": "search", "model": found["model"], "results": found["results"]})
        listing = "\n".join(f"- {r['title']} ({r['url']}): {r['snippet']}" for r in found["results"])
        prepared.messages.insert(len(prepared.messages) - 1, {
            "role": "system", "content": f"Search results for the user's question:\n{listing or '(none)'}\n"
                                         "Answer from these results and cite their URLs."})

    def _tail(self, family: str) -> int:
        """Keep a share of the time for the LLM's answer (the LLM-only path ends these chains)."""
        return 1 if self._roster.ends_in_llm_only(family) else 0

    def _call(self, body: ChatCompletionRequest, messages: list[dict], ctx: RequestContext,
              deadline=None, choice: int = 0) -> ChatCall:
        """The call for one model and one choice. With no max_tokens the model may use its context
        window less the prompt (as vLLM does), capped by limits.max_output_tokens. Choice i of n>1
        samples with seed+i, so that a seeded request is repeatable and its choices still differ."""
        budget = (deadline or ctx.deadline).remaining()
        cap = self._roster.config.limits.max_output_tokens
        asked = body.token_limit()
        seed = None if body.seed is None else (body.seed + choice + 2**63) % 2**64 - 2**63
        tools = body.tools or None
        # n > 1 with no temperature samples at OpenAI's default (1.0): a greedy engine would repeat one answer
        temperature = 1.0 if body.temperature is None and (body.n or 1) > 1 else body.temperature
        return ChatCall(request_id=ctx.request_id, messages=messages, budget_s=budget,
                        max_tokens=min(asked, cap) if asked else None, max_tokens_cap=cap,
                        temperature=temperature, top_p=body.top_p, stop=body.stop, seed=seed,
                        presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
                        logit_bias=body.logit_bias, logprobs=body.logprobs or None,
                        top_logprobs=body.top_logprobs if body.logprobs else None,
                        response_format=body.response_format.as_call() if body.response_format else None,
                        tools=tools, tool_choice=body.tool_choice if tools else None,
                        parallel_tool_calls=body.parallel_tool_calls if tools else None)

    def shadow_job(self, body: ChatCompletionRequest, prepared: PreparedChat, ctx: RequestContext, model: str,
                   primary_text: str, primary_ms: float) -> ShadowJob:
        """The same call as the primary's first choice, for `model` to answer in the shadow."""
        return ShadowJob(ctx.request_id, "text", model, lambda d: self._call(body, prepared.messages, ctx, d),
                         ctx.models[-1] if ctx.models else "", primary_text, primary_ms, ctx.facts)

    async def complete(self, body: ChatCompletionRequest, prepared: PreparedChat,
                       ctx: RequestContext) -> dict[str, Any]:
        """n choices (one by default), each through the chain; usage counts the prompt once."""
        answers = []
        for i in range(body.n or 1):
            name, result = await self._roster.call(
                "llm", prepared.chain, "chat", lambda _, d, i=i: self._call(body, prepared.messages, ctx, d, i), ctx)
            result["model"] = name
            answers.append(result)
        result = merge_choices(answers)
        if prepared.speak:
            await self._speak_answer(body, result, ctx)
        return result

    async def _speak_answer(self, body: ChatCompletionRequest, result: dict[str, Any], ctx: RequestContext) -> None:
        """Answer as OpenAI's chat API does with audio: message.audio with base64 data and a transcript."""
        message = result["choices"][0]["message"]
        text = (message.get("content") or "").strip()
        if not text:
            return
        voice = body.audio.voice if body.audio else "alloy"
        fmt = body.audio.format if body.audio else "wav"
        text = text[: self._roster.config.media.max_tts_chars]
        try:
            speech = await self._audio.speak(text, voice, 1.0, ctx)
        except (ServiceUnavailable, DeadlineExceeded):
            ctx.notes.append("I could not speak the answer")
            return
        data, _ = await self._audio.encode(speech, fmt)
        message["audio"] = {"id": f"audio_{ctx.request_id}", "expires_at": int(time.time()) + 3600,
                            "data": base64.b64encode(data).decode(), "transcript": text, "format": fmt}

    async def open_stream(self, body: ChatCompletionRequest, prepared: PreparedChat,
                          ctx: RequestContext, choice: int = 0) -> tuple[OpenChat, ChainResult]:
        """A stream from the first model of the chain that shows progress within its share. A failure
        before that moves to the next model; the client sees nothing of it. The permit of the model
        that answers stays open: the relay settles it when the stream ends."""
        async def attempt(name: str, given: Attempt) -> OpenChat:
            return await self._roster.open_chat(
                name, self._call(body, prepared.messages, ctx, given.request, choice), given, ctx.facts)

        try:
            result = await self._roster.walk(prepared.chain, attempt, ctx, keep_permit=True)
        except ChainExhausted as exc:
            raise exhausted("llm", exc, ctx, self._roster.windows) from None
        ctx.used(result.model, result.failures)
        return result.value, result


def _plain_message(role: str, message) -> dict[str, Any]:
    """A message with text content, as engines and upstream servers take it (tool calls kept)."""
    out: dict[str, Any] = {"role": role, "content": message.text()}
    if message.tool_calls:
        out["tool_calls"] = [call.model_dump() for call in message.tool_calls]
        out["content"] = message.content if message.content else None
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
_REFS = ("$ref", "$dynamicRef", "$recursiveRef")


def _check_schemas(schemas: list[tuple[dict[str, Any] | None, str]]) -> None:
    """The JSON schemas a client sent (tools' parameters, response_format) must be valid JSON Schema
    2020-12, small and shallow enough to check and compile quickly, and refer only inside themselves
    (a remote $ref is never fetched). Runs off the event loop."""
    import jsonschema

    total = 0
    for schema, param in schemas:
        if schema is None:
            continue
        total += len(json.dumps(schema))
        if total > MAX_SCHEMA_BYTES:
            raise InvalidRequest(f"the request's JSON schemas are over {MAX_SCHEMA_BYTES // 1024} KiB", param=param)
        _check_shape(schema, param)
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InvalidRequest(f"{param} is not a valid JSON schema: {exc.message[:300]}", param=param) from None
        except (RecursionError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"{param} is not a valid JSON schema ({type(exc).__name__})", param=param) from None


def _check_shape(schema: Any, param: str) -> None:
    """Depth at most MAX_SCHEMA_DEPTH, and only local references (#...), checked without recursion."""
    stack = [(schema, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise InvalidRequest(f"{param} nests deeper than {MAX_SCHEMA_DEPTH} levels", param=param)
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _REFS and not (isinstance(value, str) and value.startswith("#")):
                    raise InvalidRequest(f"{param}: only local references ('#/...') are allowed, not {value!r:.80}",
                                         param=param)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)


def route_summary(decision: RouteDecision) -> dict[str, Any]:
    """The request log's `route`: the decision, how sure, by what (and which tier of the cascade: cache,
    fast or minilm), and which head version."""
    meta = decision.meta or {}
    return {"decision": decision.intent, "confidence": decision.confidence, "classifier": decision.classifier,
            "tier": meta.get("tier"), "head_version": meta.get("head_version")}
