"""What shadowing every request costs the user's request, on the CPU roster (Serve high-throughput mode):
1-token chats to smollm2 (llama.cpp), sequential, in three interleaved phases per round:

- `off`: no shadow flag;
- `shadow_failing`: `shadow.text` sends every request to smollm2-hf with an injected error on it, so
  the shadow call ends at once: what the orchestration costs (the flag, the hand-over after the answer,
  the worker, the comparison's log line);
- `shadow_real`: the same with smollm2-hf answering (transformers): the orchestration plus a second
  model working on the same two cores (jobs beyond the queue's bound are dropped, never waited for).

    .venv/bin/python loadtests/bench_shadowing.py [--per-phase 100] [--rounds 3]

Prints p50/p99 per phase and the shadow report, and writes loadtests/results/shadowing.json.
Loopback only, bounded loops.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import loopback_only, percentile  # noqa: E402
from serve_process import ROOT, ServeRun  # noqa: E402

from serve_app.request_log.reader import read_shadow  # noqa: E402
from serve_app.traffic_reports import shadow_report  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "shadowing.json"
TOKEN = "bench-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CHAT = {"model": "smollm2", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}  # as clients call
SHADOW = {"flags": {"shadow.text": {"state": "ENABLED", "variants": {"on": "smollm2-hf"}, "defaultVariant": "on"}}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-phase", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="switchboard-shadow-bench-"))

    def patch(config: dict) -> None:
        loopback_only(config)
        config["flags"] = {"file": str(work / "flags.json"), "poll_s": 0.5}
        config["request_log"] = {**config.get("request_log", {}), "dir": str(work / "log")}

    os.environ["SWITCHBOARD_ADMIN_TOKEN"] = TOKEN
    run = ServeRun(ROOT / "cluster" / "local.yaml", fast=True, args_patch=patch)
    latencies: dict[str, list[float]] = {"off": [], "shadow_failing": [], "shadow_real": []}
    try:
        started_s = run.start()
        with httpx.Client(base_url=run.url, timeout=60) as client:
            for _ in range(20):
                client.post("/v1/chat/completions", json=CHAT).raise_for_status()

            def setting(phase: str) -> None:
                client.put("/api/flags", json={"flags": {}} if phase == "off" else SHADOW,
                           headers=AUTH).raise_for_status()
                if phase == "shadow_failing":
                    client.put("/api/admin/faults/smollm2-hf", json={"error_rate": 1.0},
                               headers=AUTH).raise_for_status()
                else:
                    client.delete("/api/admin/faults/smollm2-hf", headers=AUTH)

            for r in range(args.rounds):
                order = list(latencies) if r % 2 == 0 else list(reversed(latencies))
                for phase in order:
                    setting(phase)
                    for _ in range(args.per_phase):
                        t = time.perf_counter()
                        resp = client.post("/v1/chat/completions", json=CHAT)
                        latencies[phase].append((time.perf_counter() - t) * 1000)
                        resp.raise_for_status()
            setting("off")
        shadowed = len(latencies["shadow_failing"]) + len(latencies["shadow_real"])
        waited = time.monotonic()
        while sum(1 for _ in read_shadow(work / "log")) < shadowed and time.monotonic() - waited < 300:
            time.sleep(0.5)  # the queued shadow jobs finish, each with its line
        shadows = shadow_report(read_shadow(work / "log"))
    finally:
        run.stop()
    phases = {p: {"requests": len(v), "p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)}
              for p, v in latencies.items()}
    result = {"phases": phases, "added_p50_ms": {
        p: round(phases[p]["p50_ms"] - phases["off"]["p50_ms"], 2) for p in ("shadow_failing", "shadow_real")},
        "shadow_report": shadows, "start_s": round(started_s, 1),
        "setup": f"cluster/local.yaml, high-throughput mode, {args.rounds} interleaved rounds of {args.per_phase} "
                 "sequential 1-token chats per phase; the shadow is smollm2-hf (transformers)"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for p, s in phases.items():
        print(f"{p:15} p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms  ({s['requests']} requests)")
    print("added p50:", result["added_p50_ms"])
    for key, r in shadows.items():
        print(key, r["ended"], "similarity mean", r["similarity_mean"])
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
