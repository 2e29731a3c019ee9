"""Speech to text, text to speech and voice cloning, with each family's models tried in order."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from serve_app.media.audio import DecodedAudio, decode_audio, encode_speech
from serve_app.media.image import decode_base64
from serve_app.media.pool import MediaPool
from serve_app.services.context import RequestContext
from serve_app.services.roster import Roster
from vocabulary.calls import CloneCall, SpeechCall, TranscribeCall
from vocabulary.errors import InvalidRequest, PayloadTooLarge, ServiceUnavailable
from vocabulary.routes import OPENAI_VOICES

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


@dataclass(frozen=True)
class Speech:
    pcm16: bytes
    sample_rate: int
    model: str
    voice: str
    cloned: bool = False


class AudioService:
    def __init__(self, roster: Roster, pool: MediaPool | None = None) -> None:
        self._roster = roster
        self._config = roster.config
        self._pool = pool or MediaPool(name="audio")

    async def decode(self, data: bytes, param: str = "file") -> DecodedAudio:
        """Decode and resample on the media pool (seconds of CPU for long audio), off the event loop."""
        return await self._pool.run(decode_audio, data, max_seconds=self._config.media.max_audio_seconds,
                                    param=param)

    async def decode_base64(self, text: str, param: str) -> DecodedAudio:
        """Base64 audio (a chat's input_audio part): unwrapped and decoded on the media pool."""
        max_seconds = self._config.media.max_audio_seconds
        return await self._pool.run(lambda: decode_audio(decode_base64(text, param=param), max_seconds=max_seconds,
                                                         param=param))

    async def decode_part(self, text: str, param: str, ctx: RequestContext) -> DecodedAudio:
        """A chat's input_audio part, decoded and counted against the request's media limits."""
        audio = await self.decode_base64(text, param)
        ctx.media.add_audio(audio.duration_s, self._config.media, param)
        ctx.facts = ctx.facts.with_audio(audio.duration_s)
        return audio

    async def encode(self, speech: Speech, fmt: str) -> tuple[bytes, str]:
        """Encode speech (mp3, opus, flac, wav, pcm) on the media pool; returns (bytes, content type)."""
        return await self._pool.run(encode_speech, speech.pcm16, speech.sample_rate, fmt)

    async def transcribe(self, audio: DecodedAudio, ctx: RequestContext, *, model: str | None = None,
                         language: str | None = None, prompt: str | None = None,
                         temperature: float = 0.0, tail: int = 0, task: str = "transcribe") -> dict[str, Any]:
        chain = self._roster.chain("stt", model, ctx=ctx)
        if task == "translate":
            chain = self.translators(chain, model)
        name, result = await self._roster.call("stt", chain, "transcribe", lambda _, d: TranscribeCall(
            ctx.request_id, audio.pcm_bytes(), d.remaining(), language or None, prompt or None,
            temperature, task), ctx, tail=tail)
        return {**result, "model": name, "untrusted": self.distrust(result, ctx)}

    def distrust(self, result: dict[str, Any], ctx: RequestContext) -> bool:
        """A transcript (with words in it) under stt.min_confidence is untrusted; the request's
        context keeps the lowest confidence heard."""
        confidence = result.get("confidence")
        if confidence is None or not (result.get("text") or "").strip():
            return False
        ctx.stt_confidence = confidence if ctx.stt_confidence is None else min(ctx.stt_confidence, confidence)
        untrusted = confidence < self._config.stt.min_confidence
        ctx.untrusted = ctx.untrusted or untrusted
        return untrusted

    def translators(self, chain: list[str], requested: str | None) -> list[str]:
        """The chain without English-only models: they cannot translate (tiny.en would answer nonsense
        in English for Spanish speech). A client that names one gets 400; a roster without any other, 503."""
        english_only = {m for m in chain if getattr(self._roster.spec(m).backend, "english_only", False)}
        if requested in english_only:
            raise InvalidRequest(f"model {requested!r} knows English only and cannot translate", param="model",
                                 code="unsupported_model")
        kept = [m for m in chain if m not in english_only]
        if not kept:
            raise ServiceUnavailable("no speech-to-text model of this roster can translate (English-only models "
                                     f"only: {', '.join(chain)})", code="translation_unavailable")
        return kept

    def voice_names(self) -> list[str]:
        return sorted(self._config.voices())

    def resolve_voice(self, voice: str) -> str:
        voices = self._config.voices()
        if voice in voices:
            return voice
        if voice in self._config.voice_aliases:
            return self._config.voice_aliases[voice]
        if voice in OPENAI_VOICES and voices:
            return next(iter(voices))
        raise InvalidRequest(f"unknown voice {voice!r}; available voices: {', '.join(sorted(voices))} "
                             f"(and OpenAI's: {', '.join(OPENAI_VOICES)})", param="voice", code="unknown_voice")

    def check_text(self, text: str, param: str = "input") -> str:
        if not text.strip():
            raise InvalidRequest("there is no text to speak", param=param)
        limit = self._config.media.max_tts_chars
        if len(text) > limit:
            raise PayloadTooLarge(f"the text has {len(text)} characters, over the limit of {limit}", param=param,
                                  code="text_too_long")
        return text

    async def speak(self, text: str, voice: str, speed: float, ctx: RequestContext, *,
                    model: str | None = None, tail: int = 0) -> Speech:
        text = self.check_text(text)
        voice = self.resolve_voice(voice)
        owner = self._config.voices()[voice]
        chain = self._roster.chain("tts", model, ctx=ctx)
        if model not in self._roster.specs:  # not a roster name: the model that has the voice goes first
            chain = [owner, *(m for m in chain if m != owner)]
        # A model without the voice speaks in its own first voice (and the answer says so).

        def call_for(name: str, deadline) -> SpeechCall:
            voices = self._roster.spec(name).backend.voices
            return SpeechCall(ctx.request_id, text, voice if voice in voices else next(iter(voices)),
                              deadline.remaining(), speed)

        name, result = await self._roster.call("tts", chain, "speak", call_for, ctx, tail=tail)
        if result["voice"] != voice:
            ctx.notes.append(f"voice {voice!r} was unavailable; {name} spoke with {result['voice']!r}")
        return Speech(result["audio"], result["sample_rate"], name, result["voice"])

    async def clone(self, text: str, reference: DecodedAudio, reference_text: str | None,
                    ctx: RequestContext) -> Speech:
        text = self.check_text(text, param="text")
        if self._roster.has("clone"):
            try:
                name, result = await self._roster.call(
                    "clone", self._roster.chain("clone"), "clone",
                    lambda _, d: CloneCall(ctx.request_id, text, reference.pcm_bytes(), d.remaining(),
                                           reference_text), ctx, tail=1)
                return Speech(result["audio"], result["sample_rate"], name, "cloned", cloned=True)
            except InvalidRequest:
                raise
            except Exception as exc:  # every clone model failed: fall back to the plain voice
                logger.warning("voice cloning failed; answering with the plain voice",
                               extra={"request_id": ctx.request_id, "error": str(exc)[:300]})
        ctx.notes.append("voice cloning is not available; answered with the plain voice"
                         if not self._roster.has("clone") else "voice cloning failed; answered with the plain voice")
        default_voice = next(iter(self._config.voices()))
        return await self.speak(text, default_voice, 1.0, ctx)
