"""Writes the `vision_rotated` campaign set: rendered two-line text images, each text once level
(within 3 degrees) and once turned 12-35 degrees either way, as PNGs in vision_rotated/ (16 grey
levels, to keep them small), the requests
(vision_rotated.jsonl: /api/vision uploads, tagged "rotated" or "straight") and the faults
(vision_rotated_faults.json: the primary OCR engine, rapidocr, fails on images whose text is
skewed 10 degrees or more, as the ingress measures it). Deterministic: the same files each run.

    .venv/bin/python loadtests/campaigns/make_vision_rotated.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "vision_rotated"
LINES = [
    ("Invoice 4471", "Total due: 318.40 EUR"), ("Meeting at 10:30", "Room B, second floor"),
    ("Platform 7", "Train to Lyon departs 14:05"), ("Fresh bread daily", "Open Monday to Saturday"),
    ("Parking permit", "Valid until 31 March"), ("Lab sample 22-B", "Keep refrigerated"),
    ("Exit only", "No entry for vehicles"), ("Order 99812", "Shipped by express mail"),
    ("Library card", "Return books within 21 days"), ("Wi-Fi network", "Password: orange-kite-42"),
    ("Museum ticket", "Adult admission 12.00"), ("Boarding pass", "Gate 23, seat 14C"),
    ("Warranty card", "Two years from purchase"), ("Delivery note", "Leave parcel at reception"),
    ("Blood pressure", "128 over 84, normal"), ("Bus 52 timetable", "Every 15 minutes until 23:00"),
    ("Safety notice", "Wear goggles in this area"), ("Recipe card", "Bake at 180 C for 25 min"),
    ("Concert hall", "Doors open at 19:00"), ("Pharmacy label", "Take one tablet twice a day"),
]


def render(first: str, second: str, degrees: float) -> Image.Image:
    image = Image.new("L", (760, 200), 255)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=40)
    draw.text((30, 40), first, fill=0, font=font)
    draw.text((30, 110), second, fill=0, font=font)
    return image.rotate(degrees, expand=True, fillcolor=255, resample=Image.Resampling.BICUBIC)


def main() -> None:
    rng = random.Random(11)
    FOLDER.mkdir(exist_ok=True)
    rows = []
    for n in range(2 * len(LINES)):
        first, second = LINES[n % len(LINES)]
        rotated = (n % 2 == 1) != (n >= len(LINES))  # each text once each way
        degrees = rng.choice([-1, 1]) * rng.uniform(12, 35) if rotated else rng.uniform(-3, 3)
        name = f"{n:02d}-{'rotated' if rotated else 'straight'}.png"
        render(first, second, degrees).quantize(16).save(FOLDER / name, optimize=True)
        rows.append({"endpoint": "/api/vision", "body": {"model": "auto"}, "image_path": f"vision_rotated/{name}",
                     "tag": "rotated" if rotated else "straight", "degrees": round(degrees, 1)})
    with open(HERE / "vision_rotated.jsonl", "w", encoding="utf-8") as f:
        # `degrees` is for the reader of the file: the campaign keeps only its own fields
        f.writelines(json.dumps({k: v for k, v in row.items() if k != "degrees"}) + "\n" for row in rows)
    with open(HERE / "vision_rotated_degrees.json", "w", encoding="utf-8") as f:
        json.dump({row["image_path"]: row["degrees"] for row in rows}, f, indent=2)
        f.write("\n")
    faults = [{"model": "rapidocr", "fault": {"error_rate": 1.0,
                                              "when": {"attachment": "image", "min_rotation_deg": 10}}}]
    (HERE / "vision_rotated_faults.json").write_text(json.dumps(faults, indent=2) + "\n")


if __name__ == "__main__":
    main()
