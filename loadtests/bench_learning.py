"""The predictive loop, measured on the CPU roster: a failure campaign in which the primary text engine
(smollm2, llama.cpp) fails every request about one topic (volcanoes: a conditional fault on a text
regex), then `switchboard train-router` on the request log, then the same campaign again with
paraphrases the heads never saw. For the failing class and for the other requests: failovers per 100
requests, p50 client latency, which model was tried first and which answered, before and after.

    .venv/bin/python loadtests/bench_learning.py [--breaker raised|default|both]

Phases, per breaker setting, each on a fresh service (own request log, own copy of models/router):
  0 baseline   no faults; text_topic.jsonl once (32 topic + 32 other requests)
  1 before     faults of text_topic_faults.json; text_topic.jsonl twice (the choice heads need 30 rows
               of a model before they are trusted)
  train        switchboard train-router --log-dir <this run's log> --artifacts <its copy>; wait until the
               service routes with the new version
  2 after      the same faults; text_topic_heldout.jsonl (24 paraphrases never trained on), then
               text_topic.jsonl once more
Requests are sent one at a time (latency without queueing), max_tokens 16, temperature 0.

Breakers: with the default policy (3 failures in 60 s) the faulted topic opens smollm2's breaker and
the other requests are then skipped past smollm2 too. `raised` sets the failure threshold so high that
no breaker opens within the run, so that "other requests, no change" compares routing alone;
`default` keeps the roster's policy and shows what the learned routing does for everyone else.

A failover here is a call that did not answer before the one that did: a failed call (the log's
`failovers`) or a model skipped because its breaker was open. Writes loadtests/results/learning.json.
Loopback only; the faults are put back and the breakers reset after every phase (also on errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paths import loopback_only, percentile  # noqa: E402
from serve_process import BIN, ROOT, ServeRun  # noqa: E402

from serve_app.campaign import run_campaign, wait_for_lines  # noqa: E402
from serve_app.campaign_files import read_faults, read_requests  # noqa: E402
from serve_app.request_log.reader import read_lines  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "learning.json"
CAMPAIGNS = ROOT / "loadtests" / "campaigns"
TOKEN = "bench-admin-token"
FAULTED = "smollm2"
RAISED_THRESHOLD = 10_000  # no breaker opens within a run
BREAKERS = {"raised": {"failure_threshold": RAISED_THRESHOLD, "window_s": 60, "cooldown_s": 30},
            "default": {"failure_threshold": 3, "window_s": 60, "cooldown_s": 30}}
TAGS = ("topic", "other")


def patch_for(folder: Path, breaker: dict):
    def patch(args: dict) -> None:
        loopback_only(args)
        args["request_log"] = {**args.get("request_log", {}), "dir": str(folder / "log")}
        classifier = args["router"]["classifier"]
        classifier["artifact_dir"] = str(folder / "router")
        classifier["reload_check_s"] = 0.5
        args.setdefault("resilience", {})["breaker"] = dict(breaker)
    return patch


def campaign(url: str, faults, requests, log: Path) -> list[dict]:
    """Replay `requests` one at a time with `faults` set (put back after); one row per request: its
    tag, client latency, status and log line."""
    run = asyncio.run(run_campaign(url, TOKEN, faults, requests, concurrency=1, timeout_s=120))
    if not run.restored:
        raise RuntimeError("the campaign could not put the faults back")
    lines = wait_for_lines(log, run.request_ids, timeout_s=60)
    return [{"tag": o.tag, "latency_ms": o.latency_ms, "status": o.status, "line": lines.get(o.request_id)}
            for o in run.outcomes]


def figures(rows: list[dict]) -> dict:
    """Per-class figures of a phase's rows."""
    logged = [r["line"] for r in rows if r["line"] is not None]
    not_answered = [sum(1 for c in line.get("calls") or () if c.get("status") in ("error", "skipped"))
                    for line in logged]
    failed = [int(line.get("failovers") or 0) for line in logged]
    explored = [line for line in logged if any(c.get("explored") for c in line.get("choice") or ())]
    explored_failovers = sum(n for line, n in zip(logged, not_answered) if line in explored)
    latencies = [r["latency_ms"] for r in rows if r["status"] is not None]
    per100 = lambda n: round(100 * n / len(logged), 1) if logged else None  # noqa: E731
    return {
        "requests": len(rows), "log_lines": len(logged),
        "statuses": dict(sorted(Counter(str(r["status"]) for r in rows).items())),
        "failovers_per_100": per100(sum(not_answered)),
        "failed_calls_per_100": per100(sum(failed)),
        "skipped_calls_per_100": per100(sum(not_answered) - sum(failed)),
        "faulted_model_failed": sum(1 for line in logged if FAULTED in (line.get("failed") or ())),
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p90_ms": percentile(latencies, 90) if latencies else None,
        "first_tried": dict(Counter((line.get("calls") or [{}])[0].get("model") for line in logged).most_common()),
        "answered_by": dict(Counter(line.get("model") for line in logged).most_common()),
        "intents": dict(Counter(line.get("intent") for line in logged).most_common()),
        "explored": len(explored),
        "failovers_per_100_unexplored": per100(sum(not_answered) - explored_failovers),
        "choice_head_versions": sorted({c.get("head_version") for line in logged for c in line.get("choice") or ()
                                        if c.get("head_version") is not None}),
    }


def by_tag(rows: list[dict]) -> dict:
    return {tag: figures([r for r in rows if r["tag"] == tag]) for tag in TAGS}


def train(config_file: Path, folder: Path) -> dict:
    started = time.monotonic()
    done = subprocess.run([str(BIN / "switchboard"), "train-router", "--config", str(config_file),
                           "--data", str(ROOT / "data" / "router"), "--artifacts", str(folder / "router"),
                           "--log-dir", str(folder / "log")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"train-router exited {done.returncode}: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    report["exit_status"] = done.returncode
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def wait_for_version(url: str, version: int, timeout_s: float = 60) -> float:
    """Seconds until the service classifies with head `version` (its choice heads read the same LATEST)."""
    started = time.monotonic()
    body = {"model": "auto", "messages": [{"role": "user", "content": "Why do volcanoes erupt?"}]}
    while time.monotonic() - started < timeout_s:
        meta = httpx.post(f"{url}/api/classify", json=body, timeout=30).json().get("meta") or {}
        if meta.get("head_version") == version:
            return round(time.monotonic() - started, 2)
        time.sleep(0.25)
    raise TimeoutError(f"the service did not switch to head version {version} in {timeout_s}s")


def training_summary(report: dict) -> dict:
    intent, choice = report.get("intent", {}), report.get("choice", {})
    llm = choice.get("families", {}).get("llm", {})
    return {"published": report.get("published"), "artifact": Path(report["artifact"]).name
            if report.get("artifact") else None, "refused": report.get("refused"),
            "seconds": report.get("seconds"),
            "intent_heldout_accuracy": {"before": intent.get("current_accuracy"), "after": intent.get("new_accuracy")},
            "choice_rows": {"train": choice.get("train_rows"), "heldout": choice.get("heldout_rows")},
            "llm_choice_head": {"rows_per_model": llm.get("models"), "heldout_log_loss": {
                k: (llm.get(k) or {}).get("log_loss") for k in ("new", "old", "base_rate")},
                "heldout_accuracy": {k: (llm.get(k) or {}).get("accuracy") for k in ("new", "old", "base_rate")}}}


def run_variant(name: str) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"switchboard-learning-{name}-"))
    shutil.copytree(ROOT / "models" / "router", folder / "router")  # never the repo's own heads
    topic = read_requests(CAMPAIGNS / "text_topic.jsonl")
    heldout = read_requests(CAMPAIGNS / "text_topic_heldout.jsonl")
    faults = read_faults(CAMPAIGNS / "text_topic_faults.json")
    log = folder / "log"
    run = ServeRun(ROOT / "cluster" / "local.yaml", fast=True, args_patch=patch_for(folder, BREAKERS[name]))
    out: dict = {"breaker": BREAKERS[name]}
    try:
        out["start_s"] = round(run.start(), 1)
        with httpx.Client(base_url=run.url, timeout=60) as client:  # warm both engines' first call
            for model in ("smollm2", "smollm2-hf"):
                client.post("/v1/chat/completions", json={"model": model, "max_tokens": 1, "messages": [
                    {"role": "user", "content": "Hi"}]}).raise_for_status()
        t = time.monotonic()
        out["phase0_baseline"] = by_tag(campaign(run.url, [], topic, log))
        print(f"[{name}] baseline done in {time.monotonic() - t:.0f}s", flush=True)
        t = time.monotonic()
        out["phase1_before"] = by_tag(campaign(run.url, faults, topic + topic, log))
        print(f"[{name}] before-training campaign done in {time.monotonic() - t:.0f}s", flush=True)
        report = train(run.config_file, folder)
        out["training"] = training_summary(report)
        out["training"]["log_lines"] = sum(1 for _ in read_lines(log))
        print(f"[{name}] training: {json.dumps(out['training'])}", flush=True)
        if report.get("published"):
            version = int(Path(report["artifact"]).stem.split("-")[1])
            out["training"]["service_switched_s"] = wait_for_version(run.url, version)
        t = time.monotonic()
        out["phase2_after_heldout"] = by_tag(campaign(run.url, faults, heldout, log))
        out["phase2_after_replay"] = by_tag(campaign(run.url, faults, topic, log))
        print(f"[{name}] after-training campaigns done in {time.monotonic() - t:.0f}s", flush=True)
    finally:
        run.stop()
    out["phase2_after"] = merged(out["phase2_after_heldout"], out["phase2_after_replay"],
                                 len(heldout), len(topic)) if "phase2_after_replay" in out else None
    out["log_dir"] = str(log)
    return out


def merged(a: dict, b: dict, *_counts) -> dict:
    """Phase 2 as one: rates weighted by requests; p50 not merged (kept per part)."""
    out = {}
    for tag in TAGS:
        x, y = a[tag], b[tag]
        n = x["log_lines"] + y["log_lines"]
        rate = lambda k: round((x[k] * x["log_lines"] + y[k] * y["log_lines"]) / n, 1) if n else None  # noqa: E731
        out[tag] = {"requests": x["requests"] + y["requests"], "failovers_per_100": rate("failovers_per_100"),
                    "failed_calls_per_100": rate("failed_calls_per_100"),
                    "failovers_per_100_unexplored": rate("failovers_per_100_unexplored"),
                    "explored": x["explored"] + y["explored"],
                    "p50_ms": {"heldout": x["p50_ms"], "replay": y["p50_ms"]}}
    return out


def headline(v: dict) -> dict:
    before, after = v["phase1_before"]["topic"], v.get("phase2_after") or {}
    topic_after = after.get("topic", {})
    b, a = before["failovers_per_100"], topic_after.get("failovers_per_100")
    return {
        "topic_failovers_per_100": {"before": b, "after": a,
                                    "after_heldout": v["phase2_after_heldout"]["topic"]["failovers_per_100"],
                                    "after_replay": v["phase2_after_replay"]["topic"]["failovers_per_100"]},
        "topic_failovers_reduction_x": (round(b / a, 1) if a else "inf") if a is not None else None,
        "topic_p50_ms": {"baseline_no_fault": v["phase0_baseline"]["topic"]["p50_ms"], "before": before["p50_ms"],
                         "after_heldout": v["phase2_after_heldout"]["topic"]["p50_ms"],
                         "after_replay": v["phase2_after_replay"]["topic"]["p50_ms"]},
        "other_failovers_per_100": {"baseline_no_fault": v["phase0_baseline"]["other"]["failovers_per_100"],
                                    "before": v["phase1_before"]["other"]["failovers_per_100"],
                                    "after": after.get("other", {}).get("failovers_per_100")},
        "other_p50_ms": {"baseline_no_fault": v["phase0_baseline"]["other"]["p50_ms"],
                         "before": v["phase1_before"]["other"]["p50_ms"],
                         "after_heldout": v["phase2_after_heldout"]["other"]["p50_ms"],
                         "after_replay": v["phase2_after_replay"]["other"]["p50_ms"]},
        "other_answered_by": {"baseline_no_fault": v["phase0_baseline"]["other"]["answered_by"],
                              "before": v["phase1_before"]["other"]["answered_by"],
                              "after_replay": v["phase2_after_replay"]["other"]["answered_by"]},
        "topic_explored_after": topic_after.get("explored"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--breaker", choices=("raised", "default", "both"), default="both")
    args = parser.parse_args()
    os.environ["SWITCHBOARD_ADMIN_TOKEN"] = TOKEN
    from vocabulary.router_config import ChoiceSpec

    choice = ChoiceSpec()
    started = time.monotonic()
    variants = ("raised", "default") if args.breaker == "both" else (args.breaker,)
    runs = {name: run_variant(name) for name in variants}
    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()} "
                   f"{platform.release()}, Python {platform.python_version()}; CPU roster (cluster/local.yaml), "
                   "Serve high-throughput mode, requests one at a time",
        "config": {"faulted_model": FAULTED, "chain": ["smollm2", "smollm2-hf"],
                   "faults": json.loads((CAMPAIGNS / "text_topic_faults.json").read_text()),
                   "choice": choice.model_dump(), "max_tokens": 16,
                   "requests": {"text_topic.jsonl": 64, "text_topic_heldout.jsonl": 24}},
        "wall_s": round(time.monotonic() - started, 1),
        "headline": {name: headline(v) for name, v in runs.items()},
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, h in result["headline"].items():
        f, p = h["topic_failovers_per_100"], h["topic_p50_ms"]
        print(f"[breaker {name}] topic: failovers/100 {f['before']} -> {f['after']} "
              f"(heldout {f['after_heldout']}, replay {f['after_replay']}; {h['topic_failovers_reduction_x']}x; "
              f"explored {h['topic_explored_after']}); p50 ms no-fault {p['baseline_no_fault']}, before "
              f"{p['before']}, after {p['after_heldout']} / {p['after_replay']}")
        o, q = h["other_failovers_per_100"], h["other_p50_ms"]
        print(f"[breaker {name}] other: failovers/100 {o['baseline_no_fault']} / {o['before']} / {o['after']}; "
              f"p50 ms {q['baseline_no_fault']} / {q['before']} / {q['after_heldout']} / {q['after_replay']}; "
              f"answered by {h['other_answered_by']}")
    print(f"wrote {RESULTS} in {result['wall_s']} s")


if __name__ == "__main__":
    main()
