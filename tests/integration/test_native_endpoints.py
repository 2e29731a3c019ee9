"""The native /api endpoints: vision, voice (stt, tts, clone) and search, on the real models."""

import base64
import io

import httpx
import pytest
import soundfile

from tests.integration.media import text_image, words

pytestmark = pytest.mark.integration


@pytest.fixture
def http(switchboard):
    with httpx.Client(base_url=switchboard, timeout=120) as c:
        yield c


def test_vision_returns_lines_boxes_and_confidences(http):
    r = http.post("/api/vision", files={"file": ("t.png", text_image("Order 2231 shipped", size=(700, 90)))})
    assert r.status_code == 200
    body = r.json()
    assert body["text"] == "Order 2231 shipped" and body["model"] == "rapidocr"
    (line,) = body["lines"]
    assert len(line["box"]) == 4 and 0.5 < line["confidence"] <= 1
    assert body["switchboard"] == {"models": ["rapidocr"], "degraded": False, "failed": [], "notes": []}
    jpeg = text_image("Order 2231 shipped", size=(700, 90), fmt="JPEG")
    r = http.post("/api/vision", data={"image_url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()})
    assert r.status_code == 200 and r.json()["text"] == "Order 2231 shipped"
    r = http.post("/api/vision")
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"


def test_tts_and_stt_native(http):
    r = http.post("/api/voice/tts", json={"text": "The weather is sunny today.", "voice": "joe"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    r = http.post("/api/voice/stt", files={"file": ("a.wav", r.content)})
    assert r.status_code == 200
    body = r.json()
    assert words(body["text"]) == ["the", "weather", "is", "sunny", "today"]
    assert body["language"] == "en" and 0 < body["confidence"] <= 1 and body["segments"]
    assert body["model"] == "whisper-base" and 0.5 < body["language_probability"] <= 1  # detected, not assumed
    r = http.post("/api/voice/tts", json={"text": "hi", "voice": "joe", "volume": 3})
    assert r.status_code == 400 and r.json()["error"]["param"] == "volume"


def test_clone_without_a_clone_model_answers_in_the_plain_voice(http):
    ref = http.post("/api/voice/tts", json={"text": "This is my voice.", "voice": "espeak"}).content
    r = http.post("/api/voice/clone", data={"text": "Cloned or not, I still speak."},
                  files={"reference": ("ref.wav", ref)})
    assert r.status_code == 200
    assert r.headers["x-switchboard-degraded"] == "true" and r.headers["x-switchboard-cloned"] == "false"
    body = r.json()
    assert body["cloned"] is False and body["model"] == "kokoro"  # the first voice's model
    assert body["switchboard"]["notes"] == ["voice cloning is not available; answered with the plain voice"]
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(body["audio"])))
    assert len(samples) / rate > 1
    r = http.post("/api/voice/clone", data={"text": "x"}, files={"reference": ("ref.wav", b"")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "empty_audio"


def test_search_falls_back_to_the_local_index(http):
    r = http.post("/api/search", json={"query": "token authentication RAY_AUTH_MODE", "max_results": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "local" and r.headers["x-switchboard-degraded"] == "true"
    assert r.headers["x-switchboard-failed"] == "web"
    assert body["switchboard"]["failed"][0].startswith("web: web search failed")
    top = body["results"][0]
    assert top["url"].startswith("search_corpus/operations.md") and "Token authentication" in top["snippet"]
    assert set(top) == {"title", "url", "snippet"}
    r = http.post("/api/search", json={"query": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "query"


def test_openapi_documents_the_native_endpoints(http):
    paths = http.get("/openapi.json").json()["paths"]
    for path in ["/api/vision", "/api/voice/tts", "/api/voice/stt", "/api/voice/clone", "/api/search",
                 "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/audio/speech", "/v1/chat/completions", "/v1/models"]:
        assert path in paths
