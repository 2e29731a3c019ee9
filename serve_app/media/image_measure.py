"""Cheap measures of an image that tell how hard it is to read: its contrast (ink against paper) and
the skew of its text. Both work on a small sample of the image (a few ms for a 2000x2000 image), on
the ingress' media pool, beside the check that decodes it.

- contrast, 0..1: the pixels of a nearest-neighbour sample (true pixel values, no blur) are split
  into ink and paper by Otsu's threshold (ink: the smaller class); contrast is the distance from
  the paper's median to the ink's darkest tenth (anti-aliased stroke edges are not the ink). Black
  text on white is about 1; grey on light grey is small.
- rotation, degrees from level, counter-clockwise positive, in (-90, 90]: the angle at which the
  projection profile of the ink pixels of a block-averaged sample is sharpest (text lines project
  to peaks at their own angle), searched every 2 degrees, then every 0.25 around the best. Upside-
  down text reads as level; a page turned by 90 degrees reads as 90. None when the image has too
  little ink or no angle stands out: a photo, noise, but also some dense pages of large text (an
  honest "cannot tell" rather than a wrong angle).

Measured (loadtests/bench_image_measure.py, loadtests/results/image_measure.json): rendered text
turned -45..45 degrees, 1 to 40 lines, 14-60 pixel fonts, 120 to 3000 pixels, within 0.6 degrees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")

SAMPLE_SIDE = 256  # the longer side of the samples measured
BLOCK = 3  # the smooth sample averages blocks of this many pixels a side of a finer nearest sample
MIN_INK = 40  # fewer ink pixels than this: no skew estimate
COARSE_INK = 1000  # ink pixels (a fixed random subset) for the coarse angle search
FINE_INK = 2500  # ... for the fine one
COARSE_STEP = 2.0
FINE_STEP = 0.25
INK_QUANTILE = 0.1
# The best angle's score over the median angle's (the better of the two scores): rendered text,
# from one line to a dense page of 24-pixel text on 3000 pixels, measured 2.2 to over 15; noise,
# blurred blobs, discs, a gradient and a blurred landscape 1.3 to 1.8.
MIN_PEAK = 2.0


@dataclass(frozen=True)
class ImageMeasure:
    rotation: float | None  # degrees, (-90, 90]; None when it cannot be told
    contrast: float  # 0..1

    @property
    def skew(self) -> float | None:
        return abs(self.rotation) if self.rotation is not None else None


def measure_image(image) -> ImageMeasure | None:
    """The measures of a decoded PIL image; None (logged) if it cannot be measured: a measure is
    information about a request, never a reason to fail it."""
    try:
        sharp, smooth = _samples(image)
        return ImageMeasure(rotation=text_rotation(smooth), contrast=ink_contrast(sharp))
    except Exception as exc:  # an exotic mode Pillow cannot convert, or a bug here
        logger.warning("image not measured", extra={"mode": image.mode, "error": f"{type(exc).__name__}: {exc}"})
        return None


def _samples(image) -> tuple[np.ndarray, np.ndarray]:
    """Two grey samples, 0..1, longer side about SAMPLE_SIDE: nearest-neighbour (pixel values as they
    are) and block-averaged (strokes merge into lines). Both come from one nearest-neighbour sample
    BLOCK times finer: Pillow's filtered resize of a 2000x2000 image costs 10-20 ms, this about 2.
    Transparency is laid over white."""
    from PIL import Image

    if image.mode in ("P", "PA", "LA") or (image.mode != "RGBA" and "transparency" in image.info):
        image = image.convert("RGBA")
    elif image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGB")
    width, height = image.size
    scale = min(1.0, SAMPLE_SIDE * BLOCK / max(width, height))
    fine = image.resize((max(BLOCK, round(width * scale)), max(BLOCK, round(height * scale))),
                        Image.Resampling.NEAREST)
    if fine.mode == "RGBA":
        fine = Image.alpha_composite(Image.new("RGBA", fine.size, (255, 255, 255, 255)), fine)
    fine = fine.convert("L")
    sharp = np.asarray(fine)[::BLOCK, ::BLOCK].astype(np.float32) / 255.0
    smooth = np.asarray(fine.reduce(BLOCK), dtype=np.float32) / 255.0
    return sharp, smooth


def _histogram(grey: np.ndarray) -> np.ndarray:
    return np.bincount(np.clip((grey * 255 + 0.5).astype(np.int64), 0, 255).ravel(), minlength=256).astype(np.float64)


def otsu_threshold(grey: np.ndarray) -> float:
    """Otsu's threshold of values in 0..1 (256 bins)."""
    return _otsu_level(_histogram(grey)) / 255


def _otsu_level(counts: np.ndarray) -> float:
    """The level (0..255) between Otsu's two classes of a 256-bin histogram."""
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(counts)
    total = weight[-1]
    mass = np.cumsum(counts * levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mass[-1] * weight / total - mass) ** 2 / (weight * (total - weight))
    between[~np.isfinite(between)] = -1
    return int(np.argmax(between)) + 0.5


def _ink_mask(grey: np.ndarray) -> np.ndarray:
    """Pixels of the smaller of Otsu's two classes (dark text on light paper, or light on dark)."""
    dark = grey < otsu_threshold(grey)
    return dark if dark.sum() * 2 <= dark.size else ~dark


def ink_contrast(grey: np.ndarray) -> float:
    """Paper (the median of Otsu's larger class) against ink (the darkest tenth of the smaller
    class, or the lightest for light text on dark): anti-aliased stroke edges do not count. 0..1."""
    counts = _histogram(grey)
    split = int(_otsu_level(counts)) + 1  # levels below `split` are the dark class
    dark, light = counts[:split], counts[split:]
    if not dark.sum() or not light.sum():
        return 0.0
    if dark.sum() <= light.sum():  # dark ink on light paper
        paper, ink = split + _level_at(light, 0.5), _level_at(dark, INK_QUANTILE)
    else:
        paper, ink = _level_at(dark, 0.5), split + _level_at(light, 1 - INK_QUANTILE)
    return round(abs(paper - ink) / 255, 3)


def _level_at(counts: np.ndarray, quantile: float) -> float:
    """The level (bin index) below which `quantile` of the counts lie."""
    return float(np.searchsorted(np.cumsum(counts), counts.sum() * quantile))


def text_rotation(grey: np.ndarray) -> float | None:
    """The angle of the text lines, counter-clockwise from level, in (-90, 90]."""
    if grey.max() - grey.min() < 8 / 255:
        return None
    ys, xs = np.nonzero(_ink_mask(grey))
    if len(xs) < MIN_INK:
        return None
    xs = xs.astype(np.float32) - xs.mean()
    ys = ys.astype(np.float32) - ys.mean()
    reach = float(np.sqrt(xs ** 2 + ys ** 2).max()) + 2
    coarse = np.arange(-90.0, 90.0, COARSE_STEP)
    # Two scores of a projection profile, each strong where the other is weak: its concentration
    # (sum of squared counts) finds a few lines of large text, where the stems of the letters make
    # a sideways profile as jagged as the lines'; its jaggedness (sum of squared steps) finds a dense
    # page of small text, whose block outline fools the concentration. The one whose best angle
    # stands out more from the median angle decides.
    scores = _profile_scores(*_thinned(xs, ys, COARSE_INK), coarse, reach)
    peaks = scores.max(axis=1) / np.maximum(np.median(scores, axis=1), 1e-9)
    kind = int(np.argmax(peaks))
    if peaks[kind] < MIN_PEAK:  # no angle stands out: no lines to measure
        return None
    best = coarse[np.argmax(scores[kind])]
    fine = np.arange(best - COARSE_STEP, best + COARSE_STEP + FINE_STEP / 2, FINE_STEP)
    angle = float(fine[np.argmax(_profile_scores(*_thinned(xs, ys, FINE_INK), fine, reach)[kind])])
    angle = (angle + 90.0) % 180.0 - 90.0  # into [-90, 90)
    return 90.0 if angle <= -90.0 + FINE_STEP / 2 else round(angle, 2)


def _thinned(xs: np.ndarray, ys: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    if len(xs) <= most:
        return xs, ys
    keep = np.random.default_rng(0).choice(len(xs), most, replace=False)  # no stride to alias with the rows
    return xs[keep], ys[keep]


def _profile_scores(xs: np.ndarray, ys: np.ndarray, angles_deg: np.ndarray, reach: float) -> np.ndarray:
    """For each angle, the projection of the ink on the normal of lines at that angle (1-pixel
    bins), scored [concentration, jaggedness]: shape (2, len(angles))."""
    theta = np.deg2rad(angles_deg).astype(np.float32)[:, None]
    offsets = np.rint(xs[None, :] * np.sin(theta) + ys[None, :] * np.cos(theta) + reach).astype(np.int64)
    bins = int(2 * reach) + 2
    rows = offsets + (np.arange(len(angles_deg), dtype=np.int64) * bins)[:, None]
    counts = np.bincount(rows.ravel(), minlength=bins * len(angles_deg)).reshape(len(angles_deg), bins)
    counts = counts.astype(np.float64)
    return np.stack([(counts ** 2).sum(axis=1), (np.diff(counts, axis=1) ** 2).sum(axis=1)])
