"""The documented limits hold end to end, through every hop of Serve's high-throughput mode (HAProxy,
then one gRPC message each way between the ingress and a model): 4,096 characters spoken, 600 s of
audio transcribed, a 40 MP image read, a 25 MiB body accepted. Each of these was once a 503
"(AioRpcError)": the messages passed gRPC's 4 MiB default (cluster/serve.env raises it).

The shared session app runs with small limits; this module deploys a second app with the documented
ones (the defaults, as in cluster/local.yaml) beside it, under /limits, and deletes it at the end."""

import io

import httpx
import numpy as np
import pytest
import soundfile

from tests.integration.conftest import roster_config, wait_until
from tests.integration.media import big_text_png, mp3, passage, words

pytestmark = pytest.mark.integration

PREFIX = "/limits"
LONG = {"x-switchboard-deadline-ms": "300000"}  # the longest deadline the service grants
KEEP = ("smollm2", "whisper-tiny", "piper", "rapidocr", "tesseract")
MiB = 1024 * 1024


def limits_config(router_dir: str) -> dict:
    """The session roster's models that these tests need, with the documented limits (the defaults)."""
    config = roster_config("http://127.0.0.1:9/v1", router_dir)
    for small in ("limits", "media", "voice_aliases"):
        config.pop(small)
    config["models"] = [m for m in config["models"] if m["name"] in KEEP]
    config["routes"] = {"text": ["smollm2"]}
    return config


@pytest.fixture(scope="module")
def limits_url(ray_serve, router_dir):
    from ray import serve

    from serve_app.builder import build_app

    serve.run(build_app(limits_config(str(router_dir))), name="limits", route_prefix=PREFIX)
    url = f"{ray_serve}{PREFIX}"
    try:
        wait_until(lambda: httpx.get(f"{url}/api/health/live", timeout=5).status_code == 200, 120, "limits app")
        yield url
    finally:
        serve.delete("limits")


@pytest.fixture(scope="module")
def http(limits_url):
    with httpx.Client(base_url=limits_url, timeout=330) as c:
        yield c


@pytest.fixture(scope="module")
def spoken_4096(http):
    """4,096 characters (the documented limit) spoken by Piper, as MP3: about 210 s of speech, 9 MB
    of PCM coming back from the TTS replica in one message."""
    text = passage(4096)
    assert len(text) == 4096
    r = http.post("/v1/audio/speech", json={"input": text, "voice": "joe", "response_format": "mp3"}, headers=LONG)
    return text, r


def test_4096_characters_are_spoken(spoken_4096):
    _, r = spoken_4096
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/mpeg" and r.headers["x-switchboard-model"] == "piper"
    samples, rate = soundfile.read(io.BytesIO(r.content), dtype="float32")
    assert len(samples) / rate > 150  # all of it: at speed 1 Piper says about 19 characters a second
    assert len(samples) * 2 > 4 * MiB  # the PCM that crossed the gRPC hop: over the old cap


def test_600_seconds_of_audio_are_transcribed(http, spoken_4096):
    """599 s: the 4,096 characters over and over, then a last sentence that only the end holds."""
    _, r = spoken_4096
    assert r.status_code == 200, r.text
    speech, rate = soundfile.read(io.BytesIO(r.content), dtype="float32")
    ending = http.post("/v1/audio/speech", json={"input": "The last word of this recording is pineapple.",
                                                 "voice": "joe", "response_format": "wav"})
    assert ending.status_code == 200, ending.text
    tail, tail_rate = soundfile.read(io.BytesIO(ending.content), dtype="float32")
    assert tail_rate == rate
    body = np.tile(speech, int(np.ceil(600 * rate / len(speech))))[:599 * rate - len(tail) - rate // 2]
    audio = np.concatenate([body, np.zeros(rate // 2, np.float32), tail])
    assert 598 < len(audio) / rate <= 599
    clip = mp3(audio, rate)  # compact: about 2 MB; decoded to 16 kHz float32 it is 38 MB
    assert len(clip) < 10 * MiB

    r = http.post("/v1/audio/transcriptions", files={"file": ("long.mp3", clip, "audio/mpeg")},
                  data={"response_format": "verbose_json"}, headers=LONG)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["duration"] == pytest.approx(599, abs=1)
    heard = set(words(result["text"]))
    assert "pineapple" in heard  # the very end was transcribed
    said = set(words(passage(4096)))
    assert len(said & heard) / len(said) > 0.7


def test_a_40_megapixel_image_is_read(http):
    image = big_text_png(8000, 5000, "BRIGHT HARBOUR", font_size=700, noise_rows=250)
    assert len(image) > 4.7e6  # larger than the PNG that failed
    r = http.post("/api/vision", files={"file": ("big.png", image, "image/png")}, data={"model": "rapidocr"},
                  headers=LONG)
    assert r.status_code == 200, r.text
    assert "BRIGHT HARBOUR" in r.json()["text"].upper()


def test_a_body_of_25_mib_is_accepted(http):
    image = big_text_png(4000, 3000, "QUIET PIER", font_size=300, noise_rows=2168)
    files = {"file": ("noisy.png", image, "image/png")}
    body_size = len(httpx.Request("POST", "http://x/", files=files, data={"model": "rapidocr"}).read())
    assert 24.5 * MiB < body_size <= 25 * MiB
    r = http.post("/api/vision", files=files, data={"model": "rapidocr"}, headers=LONG)
    assert r.status_code == 200, r.text
    assert "QUIET PIER" in r.json()["text"].upper()


def test_one_byte_more_than_25_mib_is_413(http):
    r = http.post("/api/vision", files={"file": ("x.png", b"\x89PNG" + b"\0" * (25 * MiB))})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
