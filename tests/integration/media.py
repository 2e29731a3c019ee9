"""Test media made on the spot: rendered text images, synthetic audio."""

import io

import numpy as np
import soundfile
from PIL import Image, ImageDraw, ImageFont


def text_image(text: str, size=(640, 90), font_size=32, fmt="PNG") -> bytes:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((12, 24), text, fill="black", font=ImageFont.load_default(size=font_size))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def silence_wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(int(seconds * rate), dtype=np.int16), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()
