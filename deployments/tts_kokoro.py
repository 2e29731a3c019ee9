"""Kokoro-82M on CPU: the v1.0 int8 ONNX model under ONNX Runtime (kokoro-onnx), phonemes from the
espeak-ng library loaded in-process (espeakng-loader: no command started, nothing forked).

The model folder (models/assembled/kokoro-v1.0-int8, built at install time by serve_app/model_files.py)
holds kokoro-v1.0.int8.onnx, vocab.json and voices.npz. Each voice speaks the language its pack names
(ef_dora Spanish, ff_siwis French, af_heart American English, ...). Answers mono int16 PCM at 24 kHz.
"""

from __future__ import annotations

import logging

import numpy as np

from vocabulary.backend_specs import KokoroOnnxBackend
from vocabulary.engine_thread import EngineThread
from vocabulary.errors import ModelError
from vocabulary.model_source import resolve

MODEL_FILE = "kokoro-v1.0.int8.onnx"
VOCAB_FILE = "vocab.json"
VOICES_FILE = "voices.npz"
MIN_SPEED, MAX_SPEED = 0.5, 2.0  # what kokoro-onnx accepts


class KokoroOnnxEngine:
    def __init__(self, spec: KokoroOnnxBackend) -> None:
        self._spec = spec
        self._kokoro = None
        self._thread = EngineThread("kokoro-onnx")

    async def start(self) -> None:
        folder = resolve(self._spec.source)
        missing = [f for f in (MODEL_FILE, VOCAB_FILE, VOICES_FILE) if not (folder / f).is_file()]
        if missing:
            raise ModelError(f"{folder} lacks {', '.join(missing)} (run `switchboard assemble-models`)")

        def load():
            import onnxruntime
            from kokoro_onnx import Kokoro

            # kokoro-onnx gives its logger a plain stderr handler; its records go to the replica's logging instead.
            logging.getLogger("kokoro_onnx").handlers.clear()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._spec.intra_op_threads
            options.inter_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), sess_options=options,
                                                   providers=["CPUExecutionProvider"])
            return Kokoro.from_session(session, str(folder / VOICES_FILE), vocab_config=str(folder / VOCAB_FILE))

        kokoro = await self._thread.run(load)
        absent = sorted(set(self._spec.voices.values()) - set(kokoro.get_voices()))
        if absent:
            raise ModelError(f"{folder / VOICES_FILE} has no voice pack {', '.join(absent)}")
        self._kokoro = kokoro

    def voices(self) -> list[str]:
        return sorted(self._spec.voices)

    async def synthesize(self, text: str, voice: str, speed: float) -> tuple[bytes, int]:
        kokoro = self._kokoro
        if kokoro is None:
            raise ModelError("Kokoro is not loaded")
        pack, language = self._spec.voices[voice], self._spec.language(voice)
        speed = min(MAX_SPEED, max(MIN_SPEED, speed))

        def run() -> tuple[bytes, int]:
            try:
                audio, rate = kokoro.create(text, voice=pack, speed=speed, lang=language)
            except ValueError as exc:  # no phoneme of the text is in Kokoro's vocabulary
                raise ModelError(f"Kokoro could not speak the text: {exc}") from exc
            return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes(), rate

        return await self._thread.run(run)

    async def check(self) -> None:
        if self._kokoro is None:
            raise ModelError("Kokoro is not loaded")

    async def close(self) -> None:
        self._thread.close()
        self._kokoro = None
