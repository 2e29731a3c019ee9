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


# ---- media at the documented limits ---------------------------------------------------------------

PASSAGE = ("The harbour master walked along the quiet pier before sunrise. Fishing boats rocked gently "
           "against the wooden posts while gulls circled above the water. She checked the weather board, "
           "wrote a short note about the wind, and waved to the baker who was opening his shop. ")


def passage(chars: int) -> str:
    """`chars` characters of PASSAGE repeated, cut at a word."""
    text = (PASSAGE * (chars // len(PASSAGE) + 2))[:chars]
    return text if text[-1] == " " else text[:chars - 1] + "."


def dense_page(lines: int = 70, width: int = 1000, font_size: int = 20, seed: int = 0) -> bytes:
    """A page of small, dense text (about 90 characters a line): what a scanned letter looks like."""
    import random

    rng = random.Random(seed)
    vocabulary = words(PASSAGE)
    image = Image.new("RGB", (width, 40 + lines * (font_size + 8)), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for i in range(lines):
        line = ""
        while len(line) < 90:
            line += rng.choice(vocabulary) + " "
        draw.text((30, 20 + i * (font_size + 8)), line.strip(), fill="black", font=font)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def big_text_png(width: int, height: int, text: str, font_size: int, noise_rows: int = 0, seed: int = 0) -> bytes:
    """White page with `text` drawn large; the first `noise_rows` rows random (incompressible),
    so the file is as large as wanted."""
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 255, np.uint8)
    pixels[:noise_rows] = rng.integers(0, 256, (noise_rows, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    ImageDraw.Draw(image).text((width // 20, noise_rows + (height - noise_rows) // 3), text, fill="black",
                               font=ImageFont.load_default(size=font_size))
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def mp3(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    soundfile.write(buf, samples, rate, format="MP3", subtype="MPEG_LAYER_III")
    return buf.getvalue()
