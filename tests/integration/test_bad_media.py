"""Bad input never reaches a model: each gets a clear 4xx with an OpenAI-shaped error body."""

import base64
import io

import httpx
import pytest
from PIL import Image

from tests.integration.media import silence_wav, text_image

pytestmark = pytest.mark.integration


@pytest.fixture
def http(switchboard):
    with httpx.Client(base_url=switchboard, timeout=60) as c:
        yield c


def error_of(r, status):
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    return body


def image_chat(url):
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "read it"},
                                                      {"type": "image_url", "image_url": {"url": url}}]}]}


def data_url(data, mime="image/png"):
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def test_undecodable_image(http):
    broken = text_image("x")[:60] + b"\x00" * 200  # a PNG header, then garbage
    err = error_of(http.post("/api/vision", files={"file": ("a.png", broken)}), 400)
    assert err["code"] == "invalid_image" and err["param"] == "file"
    err = error_of(http.post("/v1/chat/completions", json=image_chat(data_url(broken))), 400)
    assert err["code"] == "invalid_image" and err["param"] == "messages.0.content.1.image_url.url"


def test_unsupported_image_format(http):
    err = error_of(http.post("/api/vision", files={"file": ("a.txt", b"just some text, not an image")}), 415)
    assert err["code"] == "unsupported_media_type" and "PNG" in err["message"]


def test_image_over_the_pixel_limit_is_refused_unread(http):
    bomb = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(bomb, "PNG")  # 50 Mpx, a few KB compressed
    assert len(bomb.getvalue()) < 100_000
    err = error_of(http.post("/api/vision", files={"file": ("bomb.png", bomb.getvalue())}), 413)
    assert err["code"] == "image_too_large" and "10000x5000" in err["message"]


def test_bad_data_urls(http):
    err = error_of(http.post("/v1/chat/completions", json=image_chat("data:image/png,notbase64")), 400)
    assert "base64" in err["message"]
    err = error_of(http.post("/v1/chat/completions", json=image_chat("data:image/png;base64,@@@@")), 400)
    assert err["code"] == "invalid_base64"


def transcribe(http, data, name="a.wav"):
    return http.post("/v1/audio/transcriptions", files={"file": (name, data)}, data={"model": "whisper-1"})


def test_empty_audio(http):
    assert error_of(transcribe(http, b""), 400)["code"] == "empty_audio"
    header_only = silence_wav(0)  # a valid WAV with no samples
    assert error_of(transcribe(http, header_only), 400)["code"] == "empty_audio"


def test_unsupported_and_undecodable_audio(http):
    err = error_of(transcribe(http, b"%PDF-1.7 not audio at all", "a.pdf"), 415)
    assert err["code"] == "unsupported_media_type"
    err = error_of(transcribe(http, b"RIFF\x10\x00\x00\x00WAVEfmt garbage garbage"), 400)
    assert err["code"] == "invalid_audio"


def test_audio_over_the_duration_limit(http):
    err = error_of(transcribe(http, silence_wav(31)), 400)  # the test roster allows 30 s
    assert err["code"] == "audio_too_long" and "30" in err["message"]
    chat = {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(silence_wav(31)).decode(), "format": "wav"}}]}]}
    err = error_of(http.post("/v1/chat/completions", json=chat), 400)
    assert err["code"] == "audio_too_long" and err["param"] == "messages.0.content.0.input_audio.data"


def test_bad_input_audio_base64(http):
    chat = {"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "!!not base64!!", "format": "wav"}}]}]}
    assert error_of(http.post("/v1/chat/completions", json=chat), 400)["code"] == "invalid_base64"
    chat["messages"][0]["content"][0]["input_audio"]["format"] = "aiff"
    assert error_of(http.post("/v1/chat/completions", json=chat), 400)["param"].startswith("messages.0.content")


def test_tts_text_limits(http):
    err = error_of(http.post("/v1/audio/speech", json={"input": "word " * 200, "voice": "alloy"}), 413)
    assert err["code"] == "text_too_long" and "500" in err["message"]
    err = error_of(http.post("/v1/audio/speech", json={"input": "   ", "voice": "alloy"}), 400)
    assert err["param"] == "input"
    err = error_of(http.post("/v1/audio/speech", json={"input": "hi", "response_format": "aiff"}), 400)
    assert err["param"] == "response_format"
    err = error_of(http.post("/v1/audio/speech", json={"input": "hi", "speed": 9}), 400)
    assert err["param"] == "speed"


def test_wrong_family_and_unknown_audio_model(http):
    err = error_of(http.post("/v1/audio/transcriptions", files={"file": ("a.wav", silence_wav(1))},
                             data={"model": "piper"}), 400)
    assert "tts model" in err["message"]
    err = error_of(http.post("/v1/audio/transcriptions", files={"file": ("a.wav", silence_wav(1))},
                             data={"model": "whisper-9"}), 404)
    assert "whisper-1" in err["message"]
