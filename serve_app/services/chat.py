"""Chat completions: attachments read first (images by the vision models, audio by speech to text),
their text handed to the LLM with the user's words, the LLM chain tried in order."""

from __future__ import annotations

import logging
from typing import Any

from deployments.calls import ChatCall
from graphs.failover import ChainExhausted, first_answer
from serve_app.errors import ServiceUnavailable
from serve_app.media.image import decode_base64
from serve_app.model_client import ModelStream
from serve_app.schemas.chat import AudioPart, ChatCompletionRequest, ImagePart, TextPart
from serve_app.services.audio import AudioService
from serve_app.services.context import RequestContext
from serve_app.services.roster import Roster, exhausted, is_client_error
from serve_app.services.vision import VisionService

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


class ChatService:
    def __init__(self, roster: Roster, audio: AudioService, vision: VisionService) -> None:
        self._roster = roster
        self._audio = audio
        self._vision = vision

    async def prepare(self, body: ChatCompletionRequest, ctx: RequestContext) -> tuple[list[str], list[dict],
                                                                                        list[dict]]:
        """The LLM chain, the messages as plain text, and a report per attachment."""
        chain = self._roster.chain("llm", body.model)
        messages, reports = [], []
        for i, message in enumerate(body.messages):
            role = "system" if message.role == "developer" else message.role
            if not isinstance(message.content, list):
                messages.append({"role": role, "content": message.text()})
                continue
            parts = []
            for j, part in enumerate(message.content):
                param = f"messages.{i}.content.{j}"
                if isinstance(part, TextPart):
                    parts.append(part.text)
                elif isinstance(part, ImagePart):
                    parts.append(await self._read_image(part, param, ctx, reports))
                elif isinstance(part, AudioPart):
                    parts.append(await self._hear_audio(part, param, ctx, reports))
            messages.append({"role": role, "content": "\n\n".join(p for p in parts if p)})
        if ctx.notes:
            messages.insert(0, {"role": "system", "content": "Some attachments could not be processed: "
                                + "; ".join(ctx.notes) + ". Say so plainly, then help as well as you can."})
        return chain, messages, reports

    async def _read_image(self, part: ImagePart, param: str, ctx: RequestContext, reports: list[dict]) -> str:
        n = sum(r["type"] == "image" for r in reports) + 1
        data = await self._vision.load(part.image_url.url, ctx, param=f"{param}.image_url.url")
        try:
            result = await self._vision.read(data, ctx)
        except ServiceUnavailable as exc:
            ctx.notes.append(f"I could not read image {n}")
            reports.append({"type": "image", "model": None, "error": exc.message})
            return f"[Image {n}: it could not be read]"
        reports.append({"type": "image", "model": result["model"], "text": result["text"]})
        text = result["text"] or "(no text found)"
        return f"[Image {n}, the text on it as read by OCR:]\n{text}\n[End of image {n}]"

    async def _hear_audio(self, part: AudioPart, param: str, ctx: RequestContext, reports: list[dict]) -> str:
        n = sum(r["type"] == "audio" for r in reports) + 1
        raw = decode_base64(part.input_audio.data, param=f"{param}.input_audio.data")
        audio = self._audio.decode(raw, param=f"{param}.input_audio.data")
        try:
            result = await self._audio.transcribe(audio, ctx)
        except ServiceUnavailable as exc:
            ctx.notes.append(f"I could not transcribe audio {n}")
            reports.append({"type": "audio", "model": None, "error": exc.message})
            return f"[Audio {n}: it could not be transcribed]"
        reports.append({"type": "audio", "model": result["model"], "transcript": result["text"],
                        "confidence": result["confidence"]})
        return f"[Audio {n}, transcript:]\n{result['text'] or '(no speech found)'}\n[End of audio {n}]"

    def _call(self, body: ChatCompletionRequest, messages: list[dict], ctx: RequestContext) -> ChatCall:
        return ChatCall(request_id=ctx.request_id, messages=messages, budget_s=ctx.deadline.remaining(),
                        max_tokens=body.token_limit(), temperature=body.temperature, top_p=body.top_p,
                        stop=body.stop, seed=body.seed)

    async def complete(self, body: ChatCompletionRequest, chain: list[str], messages: list[dict],
                       ctx: RequestContext) -> dict[str, Any]:
        name, result = await self._roster.call("llm", chain, "chat", lambda _: self._call(body, messages, ctx), ctx)
        result["model"] = name
        return result

    async def open_stream(self, body: ChatCompletionRequest, chain: list[str], messages: list[dict],
                          ctx: RequestContext) -> tuple[str, ModelStream, dict | None]:
        """A stream from the first model of the chain that produces a first chunk. A failure before
        the first chunk moves to the next model; the client sees nothing of it."""

        async def attempt(name: str):
            stream = await self._roster.clients[name].stream("chat_stream", self._call(body, messages, ctx),
                                                             ctx.deadline)
            try:
                return stream, await anext(stream)
            except StopAsyncIteration:
                return stream, None
            except BaseException:
                stream.cancel()
                raise

        try:
            result = await first_answer(chain, attempt, ctx.deadline, is_client_error=is_client_error)
        except ChainExhausted as exc:
            raise exhausted("llm", exc, ctx) from None
        ctx.used(result.model, result.failures)
        stream, first = result.value
        return result.model, stream, first
