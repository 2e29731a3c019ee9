"""What the image measures (serve_app/media/image_measure.py) cost beside the ingress' check: the
check alone (decode) against check + measure, for 2000x2000 pages of text as PNG and JPEG, and the
measure alone on a decoded image. Medians of --runs runs, one thread.

    .venv/bin/python loadtests/bench_image_measure.py [--runs 30]

Writes loadtests/results/image_measure.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw, ImageFont  # noqa: E402 - after the path

from serve_app.media.image import check_image, inspect_image  # noqa: E402 - after the path
from serve_app.media.image_measure import measure_image  # noqa: E402 - after the path

RESULTS = ROOT / "loadtests" / "results" / "image_measure.json"
MAX_PIXELS = 40_000_000


def text_page(side: int = 2000, degrees: float = 15) -> Image.Image:
    image = Image.new("RGB", (side, side), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=40)
    for i in range(30):
        draw.text((80, 80 + i * 62), "The quick brown fox jumps over the lazy dog, again and again", fill=(30,) * 3,
                  font=font)
    return image.rotate(degrees, fillcolor="white", resample=Image.Resampling.BILINEAR)


def paired_ms(first, second, runs: int) -> tuple[float, float, float]:
    """Medians of `first`, of `second`, and of their difference, timed in turns (a busy machine's
    drift hits both alike)."""
    first(), second()  # warm-up
    a, b = [], []
    for _ in range(runs):
        for fn, times in ((first, a), (second, b)):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
    return (round(statistics.median(a), 2), round(statistics.median(b), 2),
            round(statistics.median(y - x for x, y in zip(a, b)), 2))


def median_ms(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    page = text_page()
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "pillow": Image.__version__}, "image": "2000x2000 RGB, 30 lines of text turned 15 degrees",
              "runs": args.runs, "measured": measure_image(page).__dict__}
    report["measure_decoded_ms"] = median_ms(lambda: measure_image(page), args.runs)
    for fmt, options in (("PNG", {}), ("JPEG", {"quality": 90})):
        out = io.BytesIO()
        page.save(out, format=fmt, **options)
        data = out.getvalue()
        check, both, added = paired_ms(lambda data=data: check_image(data, max_pixels=MAX_PIXELS),
                                       lambda data=data: inspect_image(data, max_pixels=MAX_PIXELS), args.runs)
        report[fmt.lower()] = {"bytes": len(data), "check_ms": check, "check_and_measure_ms": both,
                               "added_ms": added}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
