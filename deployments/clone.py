"""Voice cloning: VoxCPM-0.5B from a local path (GPU roster). The CPU roster has no clone model;
the ingress then answers with the plain TTS voice and says so."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from deployments.base import ModelDeployment
from vocabulary.calls import SAMPLE_RATE_STT, CloneCall
from vocabulary.config import ModelSpec
from vocabulary.engine_thread import EngineThread
from vocabulary.errors import ModelError
from vocabulary.model_source import resolve


class VoxCPMEngine:
    SAMPLE_RATE = 16_000

    def __init__(self, spec) -> None:
        self._spec = spec
        self._model = None
        self._thread = EngineThread("voxcpm")

    async def start(self) -> None:
        from voxcpm import VoxCPM

        path = resolve(self._spec.source)
        self._model = await self._thread.run(lambda: VoxCPM(voxcpm_model_path=str(path)))

    async def clone(self, call: CloneCall) -> tuple[bytes, int]:
        import soundfile

        def run() -> bytes:
            with tempfile.NamedTemporaryFile(suffix=".wav") as ref:
                soundfile.write(ref.name, np.frombuffer(call.reference, dtype=np.float32), SAMPLE_RATE_STT)
                wav = self._model.generate(text=call.text, prompt_wav_path=ref.name,
                                           prompt_text=call.reference_text or None,
                                           cfg_value=self._spec.cfg_value,
                                           inference_timesteps=self._spec.inference_timesteps)
            return (np.clip(np.asarray(wav, dtype=np.float32), -1, 1) * 32767).astype(np.int16).tobytes()

        return await self._thread.run(run), self.SAMPLE_RATE

    async def check(self) -> None:
        if self._model is None:
            raise ModelError("VoxCPM is not loaded")

    async def close(self) -> None:
        self._thread.close()


class CloneDeployment(ModelDeployment):
    def make_backend(self, spec: ModelSpec):
        return VoxCPMEngine(spec.backend)

    async def clone(self, call: CloneCall) -> dict[str, Any]:
        audio, rate = await self._within(call.budget_s, lambda: self._backend.clone(call))
        return {"audio": audio, "sample_rate": rate, "model": self._spec.name}

    async def _probe_once(self) -> None:
        t = np.arange(SAMPLE_RATE_STT, dtype=np.float32) / SAMPLE_RATE_STT
        ref = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32).tobytes()
        audio, _ = await self._backend.clone(CloneCall("probe", "Ready.", ref, budget_s=30))
        if not audio:
            raise ModelError("cloned no audio")
