"""What a client sees when the primary text model fails, on the CPU roster (Serve high-throughput
mode): a steady stream of 1-token chats before, during and after 100 % injected errors into the
primary (smollm2, llama.cpp), failing over to smollm2-hf (transformers).

    .venv/bin/python loadtests/bench_failover.py [--per-phase 60]

Prints client-visible errors, the time from fault to breaker open, p50/p99 per phase, and writes
loadtests/results/failover.json. Loopback only, bounded loops.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import loopback_only, percentile  # noqa: E402
from serve_process import ROOT, ServeRun  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "failover.json"
TOKEN = "bench-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
COOLDOWN_S = 5
CHAT = {"model": "smollm2", "max_tokens": 1, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}


def patch(args: dict) -> None:
    loopback_only(args)
    args["resilience"] = {"breaker": {"failure_threshold": 3, "window_s": 60, "cooldown_s": COOLDOWN_S}}


def phase(client: httpx.Client, n: int, on_each=None) -> dict:
    latencies, errors, answered_by = [], 0, {}
    for _ in range(n):
        t = time.perf_counter()
        r = client.post("/v1/chat/completions", json=CHAT)
        latencies.append((time.perf_counter() - t) * 1000)
        if r.status_code >= 500:
            errors += 1
        else:
            model = r.headers.get("x-switchboard-model", "?")
            answered_by[model] = answered_by.get(model, 0) + 1
        if on_each:
            on_each()
    return {"requests": n, "client_5xx": errors, "answered_by": answered_by,
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


def breaker(client: httpx.Client) -> str:
    return client.get("/api/admin/breakers", headers=AUTH).json()["smollm2"]["breaker"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-phase", type=int, default=60)
    args = parser.parse_args()
    import os

    os.environ["SWITCHBOARD_ADMIN_TOKEN"] = TOKEN
    run = ServeRun(ROOT / "cluster" / "local.yaml", fast=True, args_patch=patch)
    try:
        run.start()
        with httpx.Client(base_url=run.url, timeout=60) as client:
            for _ in range(10):
                client.post("/v1/chat/completions", json=CHAT).raise_for_status()
            before = phase(client, args.per_phase)
            client.put("/api/admin/faults/smollm2", json={"error_rate": 1.0}, headers=AUTH).raise_for_status()
            fault_at = time.perf_counter()
            opened = {}

            def watch():
                if "at" not in opened and breaker(client) == "open":
                    opened["at"] = time.perf_counter()

            during = phase(client, args.per_phase, watch)
            client.delete("/api/admin/faults/smollm2", headers=AUTH).raise_for_status()
            cleared_at = time.perf_counter()
            closed = {}

            def watch_close():
                if "at" not in closed and breaker(client) == "closed":
                    closed["at"] = time.perf_counter()

            recovery = phase(client, max(args.per_phase, int(COOLDOWN_S * 20)), watch_close)
            after = phase(client, args.per_phase)
        result = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "breaker": {"failure_threshold": 3, "cooldown_s": COOLDOWN_S},
            "fault_to_breaker_open_ms": round((opened["at"] - fault_at) * 1000, 1) if opened else None,
            "fault_cleared_to_breaker_closed_s": round(closed["at"] - cleared_at, 2) if closed else None,
            "before": before, "during_fault": during, "recovery": recovery, "after": after,
            "client_visible_errors": sum(p["client_5xx"] for p in (before, during, recovery, after)),
        }
    finally:
        run.stop()
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name in ("before", "during_fault", "recovery", "after"):
        p = result[name]
        print(f"{name:13} p50 {p['p50_ms']:>8} ms  p99 {p['p99_ms']:>8} ms  5xx {p['client_5xx']}  by {p['answered_by']}")
    print(f"fault -> breaker open: {result['fault_to_breaker_open_ms']} ms; "
          f"fault cleared -> closed: {result['fault_cleared_to_breaker_closed_s']} s; "
          f"client-visible errors: {result['client_visible_errors']}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
