"""The image measures the ingress takes beside its check (serve_app/media/image_measure.py): the skew
of rendered text turned by known angles, and the contrast of ink against paper."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from serve_app.media.image import check_image, inspect_image
from serve_app.media.image_measure import measure_image

WORDS = ["The quick brown fox jumps over the lazy dog", "Pack my box with five dozen liquor jugs",
         "Sphinx of black quartz, judge my vow", "How vexingly quick daft zebras jump"]


def page(width=1600, height=1200, lines=12, size=40, ink=(0, 0, 0), paper=(255, 255, 255), mode="RGB"):
    image = Image.new(mode, (width, height), paper)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=size)
    for i in range(lines):
        draw.text((60, 60 + i * int(size * 1.7)), WORDS[i % len(WORDS)], fill=ink, font=font)
    return image


def turned(image, degrees, paper=(255, 255, 255)):
    return image.rotate(degrees, expand=True, fillcolor=paper, resample=Image.Resampling.BILINEAR)


def png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("degrees", [0, 15, 30, 90, -20, 45])
def test_the_skew_of_a_page_of_text(degrees):
    measured = measure_image(turned(page(), degrees))
    assert measured.rotation == pytest.approx(degrees, abs=1.0)


@pytest.mark.parametrize("degrees", [0, 15, 30, 90])
def test_the_skew_of_one_line(degrees):
    measured = measure_image(turned(page(900, 120, lines=1, size=36), degrees))
    assert measured.skew == pytest.approx(abs(degrees), abs=1.0)


def test_upside_down_text_reads_as_level_and_a_half_turn_past_level_as_its_mirror():
    assert measure_image(turned(page(), 180)).skew == pytest.approx(0, abs=1.0)
    assert measure_image(turned(page(), 165)).rotation == pytest.approx(-15, abs=1.0)


@pytest.mark.parametrize("ink,paper", [(0, 255), (40, 220), (100, 160), (120, 140), (200, 230)])
def test_contrast_is_ink_against_paper(ink, paper):
    measured = measure_image(page(ink=(ink,) * 3, paper=(paper,) * 3))
    assert measured.contrast == pytest.approx((paper - ink) / 255, abs=0.05)


def test_light_text_on_dark_paper():
    measured = measure_image(turned(page(ink=(240,) * 3, paper=(20,) * 3), 15, paper=(20,) * 3))
    assert measured.contrast == pytest.approx(220 / 255, abs=0.05)
    assert measured.rotation == pytest.approx(15, abs=1.0)


def test_low_contrast_reads_lower_than_high_contrast_at_any_angle():
    low = measure_image(turned(page(ink=(110,) * 3, paper=(150,) * 3), 30, paper=(150,) * 3))
    high = measure_image(turned(page(), 30))
    assert low.contrast < 0.25 and high.contrast > 0.8
    assert low.rotation == pytest.approx(30, abs=1.0)


def test_text_on_a_transparent_background_is_read_on_white():
    measured = measure_image(turned(page(mode="RGBA", ink=(0, 0, 0, 255), paper=(0, 0, 0, 0)), 15,
                                    paper=(0, 0, 0, 0)))
    assert measured.rotation == pytest.approx(15, abs=1.0) and measured.contrast > 0.8


def test_no_text_no_skew():
    assert measure_image(Image.new("RGB", (640, 480), "white")) == measure_image(Image.new("L", (1, 1), 0))
    assert measure_image(Image.new("RGB", (640, 480), "white")).rotation is None
    noise = Image.fromarray((np.random.default_rng(0).random((480, 640, 3)) * 255).astype("uint8"))
    assert measure_image(noise).rotation is None  # no angle stands out


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "RGBA", "CMYK", "I", "I;16", "F"])
def test_every_mode_pillow_decodes_is_measured_or_left_unmeasured_without_error(mode):
    measured = measure_image(page(400, 200, lines=3, size=30).convert(mode) if mode not in ("I;16",)
                             else Image.new(mode, (400, 200)))
    assert measured is None or 0 <= measured.contrast <= 1


def test_inspect_checks_and_measures_and_check_is_unchanged():
    data = png(turned(page(ink=(60,) * 3, paper=(230,) * 3), 20, paper=(230,) * 3))
    info = inspect_image(data, max_pixels=40_000_000)
    assert (info.width, info.height) == check_image(data, max_pixels=40_000_000)
    assert info.rotation == pytest.approx(20, abs=1.0)
    assert info.contrast == pytest.approx(170 / 255, abs=0.05)
    assert inspect_image(data, max_pixels=40_000_000, measure=False).rotation is None
