"""Autoscaling seen working: under a Locust load, a light deployment scales up and, after the load,
back down; the ingress scales too. Replica counts over time go to loadtests/results/autoscaling.json.

The roster is cluster/local.yaml's policies with one model: an `upstream` LLM in front of
loadtests/gateway_stub.py answering after `--delay-ms` (a slow model that costs no CPU, so requests in
flight build up on 2 cores as they would in front of a GPU server). Its autoscaling: 1 to 4 replicas,
2 requests in flight each; the ingress: 1 to 2 replicas, 4 each. Locust's TextUser (`auto`, the router
on: what a chat client sends) drives loadtests/locustfile.py's staged shape. Replicas are counted from
the process titles Ray gives them (`ray::ServeReplica:<app>:<deployment>`), once a second.

    flock /tmp/switchboard-heavy.lock .venv/bin/python loadtests/bench_autoscaling.py [--peak-users 24]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_serve import switchboard_args  # noqa: E402
from serve_process import BIN, ROOT, ServeRun, free_port  # noqa: E402

RESULTS = ROOT / "loadtests" / "results"
MODEL = "stub-upstream"
MODEL_SCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2, "upscale_delay_s": 3,
                 "downscale_delay_s": 15, "look_back_period_s": 5}
INGRESS_SCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4, "upscale_delay_s": 3,
                   "downscale_delay_s": 15, "look_back_period_s": 5}
SETTLE_S = 120  # after the load, how long to wait for both to come back to their minimum


def start_stub(delay_ms: float) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "loadtests" / "gateway_stub.py"), "--port", str(port),
                             "--delay-ms", str(delay_ms)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the stub upstream did not start")


def replicas(run: ServeRun) -> dict[str, int]:
    counts = {"model": 0, "ingress": 0}
    try:
        procs = psutil.Process(run.proc.pid).children(recursive=True)
    except psutil.Error:
        return counts
    for proc in procs:
        try:
            title = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if f"ServeReplica:switchboard:llm-{MODEL}" in title:
            counts["model"] += 1
        elif "ServeReplica:switchboard:ingress" in title:
            counts["ingress"] += 1
    return counts


def locust_summary(prefix: Path) -> dict:
    with open(f"{prefix}_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    total = rows.get("Aggregated", {})
    return {"requests": int(total.get("Request Count", 0)), "failures": int(total.get("Failure Count", 0)),
            "rps": round(float(total.get("Requests/s", 0)), 2), "p50_ms": float(total.get("50%", 0) or 0),
            "p95_ms": float(total.get("95%", 0) or 0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peak-users", type=int, default=24)
    parser.add_argument("--hold", type=float, default=60)
    parser.add_argument("--delay-ms", type=float, default=1000)
    args = parser.parse_args()

    stub, stub_url = start_stub(args.delay_ms)
    work = Path(tempfile.mkdtemp(prefix="switchboard-autoscaling-"))  # the run's flags and request log

    def patch(app_args: dict) -> None:
        base = switchboard_args("stub", stub_url, "stub", work)
        model = {**base["models"][0], "max_ongoing_requests": 8, "max_queued_requests": 64,
                 "resources": {"num_cpus": 0.05}, "autoscaling": MODEL_SCALING}
        app_args.clear()
        app_args.update({**base, "models": [model],
                         "ingress": {**base["ingress"], "autoscaling": INGRESS_SCALING}})

    run = ServeRun(ROOT / "cluster" / "local.yaml", fast=True, args_patch=patch, allowed_down=())
    timeline: list[dict] = []
    locust = None
    try:
        started = run.start()
        print(f"serving in {started:.0f} s at {run.url}", flush=True)
        prefix = RESULTS / "autoscaling_locust"
        locust = subprocess.Popen(
            [str(BIN / "locust"), "-f", str(ROOT / "loadtests" / "locustfile.py"), "TextUser", "--headless",
             "--host", run.url, "--peak-users", str(args.peak_users), "--ramp-up", "10", "--hold", str(args.hold),
             "--ramp-down", "5", "--ready-timeout", "0", "--csv", str(prefix), "--only-summary"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(RESULTS / "autoscaling_locust.log", "w"))
        t0 = time.monotonic()
        load_ended = None
        while True:
            now = time.monotonic() - t0
            if load_ended is None and locust.poll() is not None:
                load_ended = now
            counts = replicas(run)
            timeline.append({"t_s": round(now, 1), "load": load_ended is None, **counts})
            print(f"t={now:5.1f}s load={'on ' if load_ended is None else 'off'} "
                  f"{MODEL}={counts['model']} ingress={counts['ingress']}", flush=True)
            if load_ended is not None and (counts["model"] <= MODEL_SCALING["min_replicas"]
                                           and counts["ingress"] <= INGRESS_SCALING["min_replicas"]):
                break
            if load_ended is not None and now - load_ended > SETTLE_S:
                break
            time.sleep(1)
        summary = locust_summary(prefix)
    finally:
        if locust is not None and locust.poll() is None:
            locust.terminate()
        run.stop()
        stub.terminate()

    def first(pred) -> float | None:
        return next((p["t_s"] for p in timeline if pred(p)), None)

    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": "2 cores, no GPU (Serve's high-throughput mode)",
        "stub_delay_ms": args.delay_ms, "peak_users": args.peak_users, "hold_s": args.hold,
        "model_autoscaling": MODEL_SCALING, "ingress_autoscaling": INGRESS_SCALING,
        "locust": summary, "load_ended_s": load_ended,
        "model_max_replicas_seen": max(p["model"] for p in timeline),
        "ingress_max_replicas_seen": max(p["ingress"] for p in timeline),
        "model_scaled_up_at_s": first(lambda p: p["model"] > MODEL_SCALING["min_replicas"]),
        "ingress_scaled_up_at_s": first(lambda p: p["ingress"] > INGRESS_SCALING["min_replicas"]),
        "back_to_min_at_s": timeline[-1]["t_s"] if (timeline[-1]["model"] <= MODEL_SCALING["min_replicas"] and
                                                    timeline[-1]["ingress"] <= INGRESS_SCALING["min_replicas"]) else None,
        "timeline": timeline,
    }
    (RESULTS / "autoscaling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=2))
    ok = (result["model_max_replicas_seen"] > 1 and result["ingress_max_replicas_seen"] > 1
          and result["back_to_min_at_s"] is not None and summary["failures"] == 0)
    print("scaled up and back down with no failed request" if ok else "autoscaling NOT seen as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
