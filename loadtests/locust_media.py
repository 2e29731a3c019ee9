"""Media for the Locust scenarios, made once at start-up: a rendered text image (Pillow) and a WAV clip
(the service's own speech, or a synthesized tone when the service cannot speak).

Runs inside the Locust process, after gevent's monkey-patching: standard library, numpy and Pillow only,
never Ray or the app's packages.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
import wave
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

IMAGE_TEXT = "Invoice number 4471"
SPOKEN_TEXT = "Please send the report to the finance team by Friday."
# Models a scenario calls; the service must report each as ok before the load starts. Web search is
# left out: load tests stay on loopback, so it is down and the search scenario names the local index.
REQUIRED_MODELS = ("smollm2", "rapidocr", "tesseract", "kokoro", "whisper-base", "local")


@dataclass(frozen=True)
class Media:
    image_data_url: str  # a PNG of IMAGE_TEXT as a data: URL, the way chat clients send images
    wav: bytes  # speech to transcribe
    wav_is_speech: bool  # False: a tone (the service could not speak at start-up); its transcript may be empty


def text_image_png(text: str = IMAGE_TEXT, size: tuple[int, int] = (640, 90), font_size: int = 32) -> bytes:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((12, 24), text, fill="black", font=ImageFont.load_default(size=font_size))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def tone_wav(seconds: float = 2.0, rate: int = 16000, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buf.getvalue()


def _post_json(url: str, body: dict, timeout_s: float) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "content-type": "application/json", "x-request-id": f"locust-setup-{uuid.uuid4()}"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def spoken_wav(host: str, text: str = SPOKEN_TEXT, timeout_s: float = 120.0) -> bytes | None:
    """`text` spoken by the service itself (POST /v1/audio/speech, wav), or None when it cannot speak."""
    try:
        status, headers, audio = _post_json(f"{host}/v1/audio/speech", {
            "model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"}, timeout_s)
    except (urllib.error.URLError, OSError) as exc:
        logger.warning("start-up speech failed (%s); transcription gets a tone", exc)
        return None
    if status != 200 or not audio.startswith(b"RIFF"):
        logger.warning("start-up speech answered %s without a WAV; transcription gets a tone", status)
        return None
    return audio


def make_media(host: str | None) -> Media:
    png = text_image_png()
    wav = spoken_wav(host) if host else None
    return Media(image_data_url="data:image/png;base64," + base64.b64encode(png).decode(),
                 wav=wav or tone_wav(), wav_is_speech=wav is not None)


def wait_until_ready(host: str, timeout_s: float, required=REQUIRED_MODELS) -> list[str]:
    """Poll GET /api/health (bounded) until every model in `required` reports ok; return the ones
    still not ok when the time ran out (empty: ready)."""
    deadline = time.monotonic() + timeout_s
    missing = list(required)
    while True:
        try:
            with urllib.request.urlopen(f"{host}/api/health", timeout=30) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:  # 503: some route has no living model (yet)
            body = exc.read()
        except (urllib.error.URLError, OSError):
            body = b""
        try:
            report = json.loads(body)
        except ValueError:
            report = {}
        models = report.get("models", {})
        missing = [m for m in required if models.get(m, {}).get("status") != "ok"]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(2)
