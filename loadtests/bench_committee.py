"""The committee's cost (Serve high-throughput mode, CPU roster), through POST /api/committee:

1. every member finishes: the members' wall time against the slowest member's own latency (target:
   at most +15 ms at p50) and against their sum;
2. one member hung (an injected hang on tesseract): the response time against the deadline (target:
   at most +100 ms) and the hung member reported as `timeout`.

    .venv/bin/python loadtests/bench_committee.py [--requests 30]

Prints the figures and writes loadtests/results/committee.json. Loopback only, bounded loops.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import loopback_only, percentile, rendered_text_png  # noqa: E402
from serve_process import ROOT, ServeRun  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "committee.json"
TOKEN = "bench-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
HUNG_DEADLINE_MS = 2000


def body(png: bytes, wav: bytes, deadline_ms: int | None = None) -> dict:
    content = [{"type": "text", "text": "What does the image say, and what was said?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()}},
               {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}]
    out = {"members": ["rapidocr", "tesseract", "stt"], "mode": "all", "max_tokens": 16,
           "messages": [{"role": "user", "content": content}]}
    if deadline_ms:
        out["deadline_ms"] = deadline_ms
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    os.environ["SWITCHBOARD_ADMIN_TOKEN"] = TOKEN
    run = ServeRun(ROOT / "cluster" / "local.yaml", fast=True, args_patch=loopback_only)
    try:
        run.start()
        with httpx.Client(base_url=run.url, timeout=60) as client:
            png = rendered_text_png("Invoice number 4471")
            wav = client.post("/v1/audio/speech", json={"input": "The delivery is at the north entrance.",
                                                        "voice": "joe", "response_format": "wav"}).content
            for _ in range(3):
                client.post("/api/committee", json=body(png, wav)).raise_for_status()
            wall, slowest, total, overhead = [], [], [], []
            for _ in range(args.requests):
                r = client.post("/api/committee", json=body(png, wav))
                r.raise_for_status()
                result = r.json()
                latencies = [m["latency_ms"] for m in result["members"]]
                assert all(m["status"] == "ok" for m in result["members"]), result["members"]
                wall.append(result["members_wall_ms"])
                slowest.append(max(latencies))
                total.append(sum(latencies))
                overhead.append(result["members_wall_ms"] - max(latencies))
            all_finish = {"n": args.requests, "members_wall_p50_ms": percentile(wall, 50),
                          "slowest_member_p50_ms": percentile(slowest, 50), "sum_of_members_p50_ms": percentile(total, 50),
                          "overhead_over_slowest_p50_ms": percentile(overhead, 50),
                          "overhead_over_slowest_p99_ms": percentile(overhead, 99)}
            client.put("/api/admin/faults/tesseract", json={"hang": True}, headers=AUTH).raise_for_status()
            response_ms, statuses = [], set()
            for _ in range(max(5, args.requests // 3)):
                t = time.perf_counter()
                r = client.post("/api/committee", json=body(png, wav, HUNG_DEADLINE_MS))
                response_ms.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
                statuses.add(next(m["status"] for m in r.json()["members"] if m["member"] == "tesseract"))
            one_hung = {"n": len(response_ms), "deadline_ms": HUNG_DEADLINE_MS,
                        "response_p50_ms": percentile(response_ms, 50), "response_p99_ms": percentile(response_ms, 99),
                        "over_deadline_p50_ms": round(percentile(response_ms, 50) - HUNG_DEADLINE_MS, 1),
                        "hung_member_status": sorted(statuses)}
    finally:
        run.stop()
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "all_finish": all_finish,
              "one_hung": one_hung}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
