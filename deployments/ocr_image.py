"""Images as OCR engines need them: 8-bit RGB, upright, one frame.

What clients send is not that. A CMYK JPEG reaches RapidOCR as four channels that it takes for
RGBA (the black plate as alpha: the text vanishes); a 16-bit PNG is a uint16 array, and Pillow's
own convert("RGB") clips every value over 255 to white (grey ink included); dark text on a
transparent background is black on black once the alpha is dropped. Every vision engine reads
what `normalise` makes of the bytes instead."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

_WIDE_GREY = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}  # 16-bit, 32-bit integer and float greys
_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}


def normalise(data: bytes) -> Image.Image:
    """Decode `data` (the first frame), turn it upright (EXIF) and make it 8-bit RGB."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        upright = ImageOps.exif_transpose(image)  # a loaded copy
    return to_rgb8(upright)


def to_rgb8(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_GREY:
        return Image.fromarray(_stretch_to_uint8(np.asarray(image)), "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in _ALPHA:
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        return _flatten(image)
    return image.convert("RGB")  # CMYK (Pillow undoes Adobe's inverted CMYK), YCbCr, L, 1, ...


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Greys wider than 8 bits, linearly onto 0..255. Values already in 0..255 stay as they are;
    others are stretched from their own range (a 12-bit scan uses 0..4095, not 0..65535)."""
    if values.dtype.kind == "f":
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 255:
        return values.astype(np.uint8)
    if high == low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _flatten(image: Image.Image) -> Image.Image:
    """Composite over the background that contrasts with the visible pixels: white under dark
    text, black under light text (what the text was drawn to be read against)."""
    rgba = np.asarray(image)
    step = max(1, int((rgba.shape[0] * rgba.shape[1] / 1_000_000) ** 0.5))  # about a million pixels say it
    sample = rgba[::step, ::step]
    visible = sample[..., :3][sample[..., 3] > 0]
    luminance = float((visible @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean()) if visible.size else 0.0
    background = Image.new("RGB", image.size, (255, 255, 255) if luminance < 128 else (0, 0, 0))
    background.paste(image.convert("RGB"), mask=image.getchannel("A"))
    return background


def upload_form(data: bytes) -> tuple[bytes, str]:
    """(bytes, mime) to send a remote vision model: the original when it is already an 8-bit RGB or
    grey JPEG or PNG with no EXIF turn, else the normalised image as PNG."""
    with Image.open(io.BytesIO(data)) as image:
        plain = (image.format in ("JPEG", "PNG") and image.mode in ("RGB", "L")
                 and image.getexif().get(ORIENTATION, 1) == 1)
        fmt = image.format
    if plain:
        return data, "image/jpeg" if fmt == "JPEG" else "image/png"
    buf = io.BytesIO()
    normalise(data).save(buf, "PNG")
    return buf.getvalue(), "image/png"


ORIENTATION = 0x0112  # the EXIF tag
