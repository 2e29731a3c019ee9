"""Blame precisely, on the real app: a burst of hostile and unlucky requests (invalid Unicode, NUL
bytes, client deadlines too short for the answer, silence, a pure tone, a one-sample clip, CMYK and
16-bit images, large media within the limits) each gets its proper answer, and afterwards every
breaker is closed with no failure counted, and ordinary requests are served by each route's primary."""

import base64
import io
import json

import httpx
import numpy as np
import pytest
import soundfile
from PIL import Image

from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.media import silence_wav, text_image, words

pytestmark = pytest.mark.integration
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
PRIMARIES = ["smollm2", "whisper-base", "kokoro", "rapidocr"]
SECONDARIES = ["smollm2-hf", "smollm2-upstream", "whisper-tiny", "piper", "espeak", "tesseract"]


def surrogate_body(text: str) -> bytes:
    """JSON with a lone surrogate escape, as a careless client sends it (json.dumps keeps the escape)."""
    return json.dumps({"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": text}]}).encode()


def wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples.astype(np.int16), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def mp3_of_silence(seconds: float) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(int(seconds * 22050), dtype=np.int16), 22050, format="MP3")
    return buf.getvalue()


def tone(seconds: float, hz: float = 440.0, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return wav(np.sin(2 * np.pi * hz * t) * 12000, rate)


def cmyk_jpeg(text: str) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(text_image(text))).convert("CMYK").save(buf, "JPEG", quality=95)
    return buf.getvalue()


def png16(text: str) -> bytes:
    grey = np.asarray(Image.open(io.BytesIO(text_image(text))).convert("L"), dtype=np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "PNG")  # uint16: a 16-bit greyscale PNG
    return buf.getvalue()


def data_url(image: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(image).decode()


@pytest.fixture
def http(switchboard):
    with httpx.Client(base_url=switchboard, timeout=180) as c:
        for model in PRIMARIES + SECONDARIES:
            c.post(f"/api/admin/breakers/{model}/reset", headers=AUTH)
        yield c


def test_hostile_and_unlucky_requests_leave_every_breaker_closed(http):
    answers = []

    def send(what, expected, *args, **kwargs):
        r = http.post(*args, **kwargs)
        answers.append((what, r.status_code))
        assert r.status_code in expected, (what, r.status_code, r.text[:300])
        return r

    json_headers = {"content-type": "application/json"}
    # Invalid Unicode: refused before any model, naming the field.
    for text in ("bad \ud800 x", "\udfff", "ok then \ud83d"):
        r = send("lone surrogate", {400}, "/v1/chat/completions", content=surrogate_body(text), headers=json_headers)
        assert r.json()["error"]["param"].startswith("messages.0.content")
    body = json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "x\ud800"}]}).encode()
    send("lone surrogate, named model", {400}, "/v1/chat/completions", content=body, headers=json_headers)
    send("lone surrogate in speech", {400}, "/v1/audio/speech", headers=json_headers,
         content=json.dumps({"model": "tts-1", "voice": "alloy", "input": "hi \ud800"}).encode())
    # NUL and other control characters: cleaned where harmless.
    r = send("NUL in speech", {200}, "/v1/audio/speech",
             json={"model": "tts-1", "voice": "alloy", "input": "Hello\x00 there\x07.", "response_format": "wav"})
    assert r.headers["x-switchboard-model"] == "kokoro"
    r = send("NUL in chat", {200}, "/v1/chat/completions",
             json={"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi\x00!"}]})
    assert r.headers["x-switchboard-model"] == "smollm2"
    # Client deadlines shorter than the answer: a 504 each, the client's, not the models'.
    for _ in range(3):
        send("short deadline", {504}, "/v1/chat/completions", headers={"x-switchboard-deadline-ms": "300"},
             json={"model": "smollm2", "max_tokens": 200, "temperature": 0,
                   "messages": [{"role": "user", "content": "Write a long story about the sea."}]})
    send("short deadline, auto", {504}, "/v1/chat/completions", headers={"x-switchboard-deadline-ms": "300"},
         json={"model": "auto", "max_tokens": 200, "messages": [{"role": "user", "content": "Tell me a story."}]})
    # Silence, a one-sample clip, a pure tone, an MP3 of silence: transcribed as what they are.
    for what, clip in (("silence", silence_wav(2.0)), ("one sample", wav(np.zeros(1))), ("tone", tone(2.0)),
                       ("mp3 of silence", mp3_of_silence(2.0))):
        r = send(what, {200}, "/v1/audio/transcriptions", files={"file": ("clip", clip)},
                 data={"model": "whisper-1"})
        assert isinstance(r.json()["text"], str) and r.headers["x-switchboard-model"] == "whisper-base", what
    # Images whose pixels are not 8-bit RGB: normalised, read by the primary.
    for what, image, mime in (("CMYK JPEG", cmyk_jpeg("Gate B12"), "image/jpeg"),
                              ("16-bit PNG", png16("Gate B12"), "image/png")):
        r = send(what, {200}, "/api/vision", files={"file": ("image", image)})
        assert r.json()["model"] == "rapidocr" and words(r.json()["text"]) == ["gate", "b12"], (what, r.text[:300])
        r = send(f"{what} in a chat", {200}, "/v1/chat/completions", json={
            "model": "auto", "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Which gate?"}, {"type": "image_url", "image_url": {"url": data_url(image, mime)}}]}]})
        report = r.json()["switchboard"]["attachments"][0]
        assert words(report["text"]) == ["gate", "b12"], (what, report)
    # Large media inside the test app's limits (500 characters, 30 s): long text to speak, a long clip
    # (about 20 s), a large image.
    r = send("long speech", {200}, "/v1/audio/speech",
             json={"model": "tts-1", "voice": "alloy", "input": "The quick brown fox jumps. " * 11,
                   "response_format": "wav"})
    long_clip = r.content
    r = send("long transcription", {200}, "/v1/audio/transcriptions", files={"file": ("long.wav", long_clip)},
             data={"model": "whisper-1"})
    assert "fox" in r.json()["text"].lower()
    big = text_image("Gate B12", size=(3000, 900), font_size=200)
    r = send("large image", {200}, "/api/vision", files={"file": ("big.png", big)})
    assert words(r.json()["text"]) == ["gate", "b12"]
    assert len(answers) >= 20, answers

    breakers = http.get("/api/admin/breakers", headers=AUTH).json()
    for model in PRIMARIES + SECONDARIES:
        assert breakers[model] == {"breaker": "closed", "failures_in_window": 0}, (model, breakers[model], answers)

    # And the ordinary requests that follow are served by each route's primary.
    r = http.post("/v1/chat/completions", json={"model": "auto", "temperature": 0,
                                                "messages": [{"role": "user", "content": "Hi!"}]})
    assert r.status_code == 200 and r.headers["x-switchboard-model"] == "smollm2", r.text[:300]
    assert r.headers["x-switchboard-degraded"] == "false"
    speech = http.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Gate B12.",
                                                 "response_format": "wav"})
    assert speech.status_code == 200 and speech.headers["x-switchboard-model"] == "kokoro"
    heard = http.post("/v1/audio/transcriptions", files={"file": ("s.wav", speech.content)}, data={"model": "whisper-1"})
    assert heard.status_code == 200 and heard.headers["x-switchboard-model"] == "whisper-base"
    seen = http.post("/api/vision", files={"file": ("a.png", text_image("Gate B12"))})
    assert seen.status_code == 200 and seen.json()["model"] == "rapidocr"
