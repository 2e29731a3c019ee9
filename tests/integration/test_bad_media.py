"""Bad input never reaches a model: each gets a clear 4xx with an OpenAI-shaped error body."""

import base64
import io

import httpx
import pytest
from PIL import Image

from tests.integration.media import silence_wav, text_image
from tests.integration.request_lines import the_line

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


def png_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def blank_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 255).save(buf, "PNG")  # megapixels in a few KB
    return buf.getvalue()


def media_chat(parts):
    return {"max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "text", "text": "read these"}, *parts]}]}


def test_too_many_image_parts_are_refused_before_any_model_works(http, request_log_dir):
    """The session's limits: 4 image parts, 2 audio parts, 20 MP and 45 s per request (the defaults: 8,
    4, 80 MP, 1200 s). Refused whole, naming the limit, with no call to any model in the request's line."""
    image = {"type": "image_url", "image_url": {"url": png_url(text_image("Invoice 4471"))}}
    r = http.post("/v1/chat/completions", json=media_chat([image] * 5), headers={"x-request-id": "parts-5img"})
    body = error_of(r, 413)
    assert "5 image parts" in body["message"] and "media.max_image_parts" in body["message"]
    assert body["param"] == "messages" and body["code"] == "payload_too_large"
    assert the_line(request_log_dir, "parts-5img")["calls"] == []
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(silence_wav(0.5)).decode(),
                                                    "format": "wav"}}
    r = http.post("/v1/chat/completions", json=media_chat([audio] * 3))
    assert "media.max_audio_parts" in error_of(r, 413)["message"]


def test_media_over_the_request_total_is_refused_before_any_is_read(http, request_log_dir):
    """Three 3000x3000 images: each under the per-image limit, 27 MP together over the request's 20 MP.
    Every image is decoded and counted before OCR starts: not one was read."""
    big = {"type": "image_url", "image_url": {"url": png_url(blank_png(3000, 3000))}}
    r = http.post("/v1/chat/completions", json=media_chat([big] * 3), headers={"x-request-id": "pixels-27mp"})
    body = error_of(r, 413)
    assert "27000000 pixels" in body["message"] and "media.max_request_pixels" in body["message"]
    assert body["param"] == "messages.0.content.3.image_url.url"
    assert the_line(request_log_dir, "pixels-27mp")["calls"] == []
    long = {"type": "input_audio", "input_audio": {"data": base64.b64encode(silence_wav(25.0)).decode(),
                                                   "format": "wav"}}
    r = http.post("/v1/chat/completions", json=media_chat([long, long]))
    assert "media.max_request_audio_seconds" in error_of(r, 413)["message"]
