"""Images reach the OCR engines as 8-bit RGB with dark text on a light page (or the reverse, as
drawn), whatever the client sent: CMYK, 16-bit, palette, alpha, bilevel, a GIF, an EXIF turn."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from deployments.ocr_image import normalise, upload_form

TEXT = "Invoice 4471"


def page() -> Image.Image:
    image = Image.new("RGB", (420, 90), "white")
    ImageDraw.Draw(image).text((12, 14), TEXT, fill="black", font=ImageFont.load_default(size=48))
    return image


def encoded(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def grey() -> np.ndarray:
    return np.asarray(page().convert("L"))


def transparent_palette() -> bytes:
    image = page().convert("P")
    return encoded(image, transparency=image.getpixel((0, 0)))


def cases() -> dict[str, bytes]:
    g = grey()
    dark_on_clear = np.zeros((*g.shape, 4), np.uint8)
    dark_on_clear[..., 3] = 255 - g  # black ink, the page itself transparent
    light_on_clear = np.stack([np.full_like(g, 255), 255 - g], -1)  # white ink on a transparent page
    return {
        "cmyk-jpeg": encoded(page().convert("CMYK"), "JPEG", quality=95),
        # 16-bit ink is rarely pure black: at 16 % grey every glyph pixel is over 255
        "16-bit-png": encoded(Image.fromarray(np.maximum(g, 40).astype(np.uint16) * 257)),
        "12-bit-png": encoded(Image.fromarray(g.astype(np.uint16) * 16)),
        "palette": encoded(page().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)),
        "palette-transparency": transparent_palette(),
        "rgba-dark-ink": encoded(Image.fromarray(dark_on_clear, "RGBA")),
        "la-light-ink": encoded(Image.fromarray(light_on_clear, "LA")),
        "bilevel": encoded(page().convert("1")),
        "gif": encoded(page().convert("P"), "GIF"),
        "grey-jpeg": encoded(page().convert("L"), "JPEG", quality=95),
    }


def ink_contrast(image: Image.Image) -> float:
    """How far the glyphs' pixels are from the page's, in 8-bit grey levels."""
    g = np.asarray(image.convert("L")).astype(float)
    glyphs = grey() < 128
    return abs(g[~glyphs].mean() - g[glyphs].mean())


@pytest.mark.parametrize("name", list(cases()))
def test_normalised_to_8_bit_rgb_with_the_text_visible(name):
    out = normalise(cases()[name])
    assert out.mode == "RGB" and np.asarray(out).dtype == np.uint8
    assert out.size == (420, 90)
    assert ink_contrast(out) > 150, f"{name}: the text is not visible any more"


def test_without_normalising_these_images_lose_their_text():
    """Why it is needed: what the engines got before (CMYK as four channels, 16-bit clipped)."""
    cmyk = np.asarray(Image.open(io.BytesIO(cases()["cmyk-jpeg"])))
    assert cmyk.shape[2] == 4  # RapidOCR took this for RGBA, the black plate for alpha
    wide = Image.open(io.BytesIO(cases()["16-bit-png"]))
    assert np.asarray(wide).dtype == np.uint16  # what RapidOCR was handed: not an 8-bit image
    assert ink_contrast(wide.convert("RGB")) < 10  # and Pillow's own conversion clips it all to white


def test_exif_orientation_is_applied():
    image = page().rotate(90, expand=True)  # stored on its side, with the tag that turns it upright
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 clockwise to view
    out = normalise(encoded(image, "JPEG", exif=exif, quality=95))
    assert out.size == (420, 90)


def test_upload_form_keeps_plain_images_and_converts_the_rest():
    plain = encoded(page(), "JPEG")
    assert upload_form(plain) == (plain, "image/jpeg")
    data, mime = upload_form(cases()["16-bit-png"])
    assert mime == "image/png" and Image.open(io.BytesIO(data)).mode == "RGB"


@pytest.fixture(scope="module")
def rapidocr():
    from rapidocr import RapidOCR

    return RapidOCR(params={"Det.limit_type": "max", "Det.limit_side_len": 960, "Global.log_level": "error"})


@pytest.mark.parametrize("name", ["cmyk-jpeg", "16-bit-png", "palette", "la-light-ink", "gif"])
def test_rapidocr_reads_the_normalised_image(rapidocr, name):
    assert rapidocr(cases()[name]).txts != (TEXT,)  # what it read from the raw bytes: nothing, or noise
    assert rapidocr(normalise(cases()[name])).txts == (TEXT,)
