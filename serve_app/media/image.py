"""Images in: sniff the format (415 if not an image we take), read the size from the header
before decoding anything (so a decompression bomb is refused unread, 413), then verify it decodes.
The check decodes the whole image (up to 40 MP): the ingress runs it on its MediaPool.
`inspect_image` checks and measures the decoded image too (text skew, contrast: a few ms)."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from serve_app.media.audio import UnsupportedMediaType
from serve_app.media.image_measure import measure_image
from vocabulary.errors import InvalidRequest, PayloadTooLarge

IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif",
                 "BMP": "image/bmp", "TIFF": "image/tiff"}
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
# Pillow's messages for chunks that inflate too far (PngImagePlugin: MAX_TEXT_CHUNK, MAX_TEXT_MEMORY).
_BOMB_TEXT = re.compile(r"decompressed data too large|too much memory used", re.IGNORECASE)


def sniff_image(data: bytes) -> str | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


@dataclass(frozen=True)
class ImageInfo:
    """A checked image: its size, and as measured (None when not measured or not measurable) the
    skew of its text in degrees from level (counter-clockwise, (-90, 90]) and its contrast (0..1)."""

    width: int
    height: int
    rotation: float | None = None
    contrast: float | None = None


def check_image(data: bytes, *, max_pixels: int, param: str = "image") -> tuple[int, int]:
    """Validate an encoded image; returns (width, height)."""
    info = inspect_image(data, max_pixels=max_pixels, param=param, measure=False)
    return info.width, info.height


def inspect_image(data: bytes, *, max_pixels: int, param: str = "image", measure: bool = True) -> ImageInfo:
    """Validate an encoded image (as check_image) and, with `measure`, measure the decoded image
    (serve_app/media/image_measure.py: a few ms over the decode)."""
    from PIL import Image

    if not data:
        raise InvalidRequest("the image is empty", param=param, code="invalid_image")
    fmt = sniff_image(data)
    if fmt is None:
        raise UnsupportedMediaType(f"unsupported image format; send one of: {', '.join(IMAGE_FORMATS)}",
                                   param=param)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > max_pixels:
                raise PayloadTooLarge(f"the image has {width}x{height} pixels, over the limit of {max_pixels}",
                                      param=param, code="image_too_large")
            if width == 0 or height == 0:
                raise InvalidRequest("the image has no pixels", param=param, code="invalid_image")
            image.load()
            measured = measure_image(image) if measure else None  # never raises
    except (PayloadTooLarge, InvalidRequest):
        raise
    except Image.DecompressionBombError:  # Image.open itself refuses over 2x Pillow's own pixel limit
        raise PayloadTooLarge(f"the image is over the limit of {max_pixels} pixels (a decompression bomb)",
                              param=param, code="image_too_large") from None
    except ValueError as exc:
        if _BOMB_TEXT.search(str(exc)):  # a compressed text or ICC chunk that inflates past Pillow's limit
            raise PayloadTooLarge("the image holds a chunk that inflates past the limits (a decompression bomb)",
                                  param=param, code="image_too_large") from None
        raise InvalidRequest(f"the image could not be decoded ({type(exc).__name__})", param=param,
                             code="invalid_image") from None
    except Exception as exc:  # Pillow raises many error types for broken input
        raise InvalidRequest(f"the image could not be decoded ({type(exc).__name__})", param=param,
                             code="invalid_image") from None
    if measured is None:
        return ImageInfo(width, height)
    return ImageInfo(width, height, measured.rotation, measured.contrast)


def parse_data_url(url: str, *, param: str) -> bytes:
    match = _DATA_URL.match(url)
    if match is None or not match.group("b64"):
        raise InvalidRequest("a data: URL must be base64 encoded (data:image/png;base64,...)", param=param)
    return decode_base64(url[match.end():], param=param)


_B64_SLICE = 1 << 20  # base64 characters per call (a multiple of 4): a few ms each


def decode_base64(text: str, *, param: str) -> bytes:
    """Strict base64 (whitespace ignored). Decoded in slices: binascii holds the GIL for a whole
    call, and on a worker thread a 25 MiB payload in one call would still stall the event loop."""
    compact = "".join(text.split())
    try:
        if compact.find("=", 0, len(compact) - 2) >= 0:  # padding only at the very end, as one call insists
            raise ValueError("padding inside the data")
        return b"".join(base64.b64decode(compact[i:i + _B64_SLICE], validate=True)
                        for i in range(0, len(compact), _B64_SLICE))
    except (binascii.Error, ValueError):
        raise InvalidRequest("invalid base64 data", param=param, code="invalid_base64") from None
