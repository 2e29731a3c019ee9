"""OpenAI's audio API through the official client, on the real Kokoro, Piper and Whisper models."""

import io

import numpy as np
import openai
import pytest
import soundfile

from tests.integration.media import words

pytestmark = pytest.mark.integration

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please send the report to the finance team by Friday.",
    "Switchboard keeps answering when a model fails at night.",
]


@pytest.fixture
def client(switchboard):
    return openai.OpenAI(base_url=f"{switchboard}/v1", api_key="unused", max_retries=0, timeout=120)


def test_speech_is_a_valid_wav(client):
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCES[0], response_format="wav")
    samples, rate = soundfile.read(io.BytesIO(audio.content), dtype="int16")
    assert rate == 24000 and samples.ndim == 1  # Kokoro
    assert 1.0 < len(samples) / rate < 10.0
    assert np.abs(samples).max() > 1000  # speech, not silence


@pytest.mark.parametrize("sentence", SENTENCES)
def test_tts_then_stt_round_trip(client, sentence):
    wav = client.audio.speech.create(model="tts-1-hd", voice="nova", input=sentence, response_format="wav").content
    result = client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", wav, "audio/wav"))
    assert words(result.text) == words(sentence)


def test_transcription_formats_and_confidence(client):
    wav = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCES[1], response_format="wav").content
    verbose = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("s.wav", wav),
                                                 response_format="verbose_json")
    assert verbose.language == "en" and verbose.duration > 1
    segment = verbose.segments[0]
    assert 0 < segment.confidence <= 1 and segment.end > segment.start
    assert 0 < verbose.model_extra["confidence"] <= 1
    text = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", wav), response_format="text")
    assert words(text) == words(SENTENCES[1])
    srt = client.audio.transcriptions.create(model="whisper-1", file=("s.wav", wav), response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ")
    vtt = client.audio.transcriptions.create(model="whisper-tiny", file=("s.wav", wav), response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")


@pytest.mark.parametrize("fmt, magic", [("mp3", None), ("flac", b"fLaC"), ("opus", b"OggS"), ("pcm", None)])
def test_speech_formats(client, fmt, magic):
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.", response_format=fmt)
    data = audio.content
    if magic:
        assert data.startswith(magic)
    if fmt == "pcm":
        assert len(data) % 2 == 0 and len(data) > 24000  # over half a second of int16 at 24 kHz
    else:
        result = client.audio.transcriptions.create(model="whisper-1", file=(f"a.{fmt}", data))
        assert "hello" in words(result.text)


def test_voices_map_and_unknown_voice_lists_them(client, switchboard):
    import httpx

    r = httpx.post(f"{switchboard}/v1/audio/speech", json={"input": "Hi there.", "voice": "onyx"}, timeout=60)
    assert r.status_code == 200 and r.headers["x-switchboard-voice"] == "am_onyx"  # voice_aliases
    r = httpx.post(f"{switchboard}/v1/audio/speech", json={"input": "Hi there.", "voice": "sage"}, timeout=60)
    assert r.status_code == 200 and r.headers["x-switchboard-voice"] == "af_heart"  # OpenAI name -> first voice
    r = httpx.post(f"{switchboard}/v1/audio/speech", json={"input": "Hi there.", "voice": "espeak"}, timeout=60)
    assert r.status_code == 200 and r.headers["x-switchboard-model"] == "espeak"  # the voice's model goes first
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.speech.create(model="tts-1", voice="darth", input="Hi")
    assert info.value.code == "unknown_voice"
    assert all(v in info.value.message for v in ("af_heart", "ef_dora", "joe", "espeak"))
