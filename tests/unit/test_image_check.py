"""The ingress's image check: decompression bombs are 413 (as documented), however they are built;
base64 is strict, in slices or not."""

import base64
import io
import os
import struct
import zlib

import pytest
from PIL import Image

from serve_app.media.image import check_image, decode_base64
from vocabulary.errors import InvalidRequest, PayloadTooLarge

LIMIT = 40_000_000


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width: int, height: int, extra: bytes = b"") -> bytes:
    """A grey PNG header claiming width x height, then a few bytes of (truncated) pixel data."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + extra + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_classic_bomb_is_413_even_where_pillow_refuses_to_open_it():
    # 400 Mpx: over twice Pillow's own limit, so Image.open raises before any header is read
    with pytest.raises(PayloadTooLarge) as caught:
        check_image(png(20_000, 20_000), max_pixels=LIMIT)
    assert caught.value.http_status == 413 and caught.value.code == "image_too_large"


def test_over_the_pixel_limit_is_413_from_the_header():
    with pytest.raises(PayloadTooLarge) as caught:
        check_image(png(9_000, 9_000), max_pixels=LIMIT)
    assert "9000x9000" in caught.value.message


def test_a_text_chunk_that_inflates_past_the_limit_is_413():
    ztxt = chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"a" * (20 << 20), 9))
    with pytest.raises(PayloadTooLarge):
        check_image(png(10, 10, ztxt), max_pixels=LIMIT)


def test_a_broken_image_is_still_400():
    good = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(good, "PNG")
    with pytest.raises(InvalidRequest) as caught:
        check_image(good.getvalue()[:80] + b"\0" * 100, max_pixels=LIMIT)
    assert caught.value.http_status == 400 and caught.value.code == "invalid_image"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 786_431, 786_432, 786_433, 3 * 786_432 + 7])
def test_base64_in_slices_decodes_what_one_call_does(size):
    raw = os.urandom(size)
    text = base64.b64encode(raw).decode()
    assert decode_base64(text, param="x") == raw
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert decode_base64(wrapped, param="x") == raw


@pytest.mark.parametrize("bad", ["abc", "ab=c", "!!not base64!!", "YQ==YQ==", "YQ="])
def test_base64_stays_strict(bad):
    with pytest.raises(InvalidRequest) as caught:
        decode_base64(bad, param="messages.0")
    assert caught.value.code == "invalid_base64"


def test_padding_at_a_slice_boundary_is_refused():
    first = base64.b64encode(os.urandom(786_430)).decode()  # 1 MiB of text that ends in '='
    assert len(first) == 1 << 20 and first.endswith("=")
    with pytest.raises(InvalidRequest):
        decode_base64(first + "YWJj", param="x")
