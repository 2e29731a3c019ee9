"""The predictive loop, measured on the CPU roster: a failure campaign in which the primary text engine
(smollm2, llama.cpp) fails every request about one topic (volcanoes: a conditional fault on a text
regex, loadtests/campaigns/text_topic_faults.json), then `switchboard train-router` on the request log,
then the same campaign again with paraphrases the heads never saw. For the failing class and for the
other requests: failovers per 100 requests, p50 client latency, which model was tried first and
which answered, before and after.

    .venv/bin/python loadtests/bench_learning.py [--variants raised,default,slow]   # about 28 min

(A subset of variants updates only their entries in the results file.)

Phases, per variant, each on a fresh service (its own request log and copy of the shipped router heads):
  0 baseline   no faults; text_topic.jsonl once (32 topic + 32 other requests)
  1 before     the faults; text_topic.jsonl twice (a model's choice head is trusted from
               router.choice.min_rows = 30 training rows, and the fallback has rows only where the
               primary failed)
  train        switchboard train-router --log-dir <the run's log> --artifacts <its copy>; wait until
               the service classifies with the new version (the choice heads read the same LATEST)
  2 after      the same faults; text_topic_heldout.jsonl (24 paraphrases never trained on), then
               text_topic.jsonl once more
Requests go one at a time (latency without queueing), max_tokens 16, temperature 0.

Variants:
  raised   breaker failure threshold 10000: no breaker opens within the run, so "other requests,
           no change" compares routing alone;
  default  the roster's breaker (3 failures in 60 s, 30 s cooldown): the topic's failures open
           smollm2's breaker and the other requests are skipped past smollm2 too. While it is open
           smollm2 is not called, so the log learns little about it (a skip is no evidence): this
           variant trains three times (train, replay, train again, replay, ...), as a periodic
           train-router would, and reports each round;
  slow     as raised, but each faulted call waits 1 s before it fails (a primary that errs after
           working a while, not at once): what the failovers cost in latency.

A failover is the chain moving on from a text engine (smollm2, smollm2-hf) that failed or was
skipped (breaker open); a retry on the same model is not one (`failed_calls_per_100` counts every
failed call, retries included). Failures of other models (the web search, down by design on
loopback) are counted apart (`failovers_any_model_per_100`). Writes loadtests/results/learning.json.
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
from vocabulary.paths import ROUTER_HEADS, config_path  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "learning.json"
CAMPAIGNS = ROOT / "loadtests" / "campaigns"
TOKEN = "bench-admin-token"
FAULTED = "smollm2"
RAISED_THRESHOLD = 10_000  # no breaker opens within a run
DEFAULT_BREAKER = {"failure_threshold": 3, "window_s": 60, "cooldown_s": 30}  # cluster/local.yaml's
RAISED_BREAKER = {**DEFAULT_BREAKER, "failure_threshold": RAISED_THRESHOLD}
SLOW_FAULT_MS = 1000
# name -> (breaker policy, latency added to each faulted call before it fails, train-and-replay rounds)
VARIANTS = {"raised": (RAISED_BREAKER, 0, 1), "default": (DEFAULT_BREAKER, 0, 3),
            "slow": (RAISED_BREAKER, SLOW_FAULT_MS, 1)}
TAGS = ("topic", "other")
TEXT_ENGINES = frozenset({"smollm2", "smollm2-hf"})  # the text chain, where the fault is


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


def failovers(line: dict, models: frozenset[str] | None = TEXT_ENGINES) -> int:
    """Times the request moved on from a model of `models` (None: any) that failed or was skipped:
    a model's last call in a run of calls to it that did not answer (a retry on the same model that
    answers is no failover)."""
    calls = [c for c in line.get("calls") or () if models is None or c.get("model") in models]
    return sum(1 for c, after in zip(calls, [*calls[1:], None]) if c.get("status") in ("error", "skipped")
               and (after is None or after.get("model") != c.get("model")))


def failed_calls(line: dict) -> int:
    return sum(1 for c in line.get("calls") or () if c.get("model") in TEXT_ENGINES and c.get("status") == "error")


def figures(rows: list[dict]) -> dict:
    """Per-class figures of a phase's rows."""
    logged = [r["line"] for r in rows if r["line"] is not None]
    moved = [failovers(line) for line in logged]
    explored = [any(c.get("explored") for c in line.get("choice") or ()) for line in logged]
    latencies = [r["latency_ms"] for r in rows if r["status"] is not None]
    per100 = lambda n: round(100 * n / len(logged), 1) if logged else None  # noqa: E731
    return {
        "requests": len(rows), "log_lines": len(logged),
        "statuses": dict(sorted(Counter(str(r["status"]) for r in rows).items())),
        "failovers_per_100": per100(sum(moved)),
        "failed_calls_per_100": per100(sum(failed_calls(line) for line in logged)),
        "skipped_per_100": per100(sum(1 for line in logged for c in line.get("calls") or ()
                                      if c.get("model") in TEXT_ENGINES and c.get("status") == "skipped")),
        "failovers_any_model_per_100": per100(sum(failovers(line, None) for line in logged)),
        "faulted_model_failed": sum(1 for line in logged if FAULTED in (line.get("failed") or ())),
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p90_ms": percentile(latencies, 90) if latencies else None,
        "first_tried": dict(Counter((line.get("calls") or [{}])[0].get("model") for line in logged).most_common()),
        "answered_by": dict(Counter(line.get("model") for line in logged).most_common()),
        "intents": dict(Counter(line.get("intent") for line in logged).most_common()),
        "explored": sum(explored),
        "failovers_per_100_unexplored": per100(sum(n for n, e in zip(moved, explored) if not e)),
        "choice_head_versions": sorted({c.get("head_version") for line in logged for c in line.get("choice") or ()
                                        if c.get("head_version") is not None}),
    }


def by_tag(rows: list[dict]) -> dict:
    return {tag: figures([r for r in rows if r["tag"] == tag]) for tag in TAGS}


def train(config_file: Path, folder: Path) -> dict:
    started = time.monotonic()
    done = subprocess.run([str(BIN / "switchboard"), "train-router", "--config", str(config_file),
                           "--data", str(ROOT / "data" / "router"), "--artifacts", str(folder / "router"),
                           "--log-dir", str(folder / "log")], cwd=ROOT, capture_output=True, text=True, check=False,
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


def train_and_switch(run: ServeRun, folder: Path, name: str) -> dict:
    report = train(run.config_file, folder)
    summary = training_summary(report)
    summary["log_lines"] = sum(1 for _ in read_lines(folder / "log"))
    print(f"[{name}] training: {json.dumps(summary)}", flush=True)
    if report.get("published"):
        version = int(Path(report["artifact"]).stem.split("-")[1])
        summary["service_switched_s"] = wait_for_version(run.url, version)
    return summary


def run_variant(name: str) -> dict:
    breaker, fault_latency_ms, rounds = VARIANTS[name]
    folder = Path(tempfile.mkdtemp(prefix=f"switchboard-learning-{name}-"))
    shutil.copytree(config_path(ROUTER_HEADS), folder / "router")  # never the repo's own heads
    topic = read_requests(CAMPAIGNS / "text_topic.jsonl")
    heldout = read_requests(CAMPAIGNS / "text_topic_heldout.jsonl")
    faults = [f.model_copy(update={"fault": f.fault.model_copy(update={"latency_ms": fault_latency_ms})})
              if fault_latency_ms else f for f in read_faults(CAMPAIGNS / "text_topic_faults.json")]
    log = folder / "log"
    run = ServeRun(ROOT / "cluster" / "local.yaml", fast=True, args_patch=patch_for(folder, breaker))
    out: dict = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "breaker": breaker,
                 "fault_latency_ms": fault_latency_ms, "training_rounds": rounds}
    try:
        out["start_s"] = round(run.start(timeout_s=600), 1)
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
        for n in range(1, rounds + 1):
            into = out if n == 1 else out.setdefault(f"round{n}", {})
            into["training"] = train_and_switch(run, folder, name)
            t = time.monotonic()
            paraphrased = campaign(run.url, faults, heldout, log)
            replayed = campaign(run.url, faults, topic, log)
            phase = "phase2" if n == 1 else f"phase{n + 1}"
            into[f"{phase}_after"] = by_tag(paraphrased + replayed)
            into[f"{phase}_after_heldout"], into[f"{phase}_after_replay"] = by_tag(paraphrased), by_tag(replayed)
            print(f"[{name}] round {n}: after-training campaigns done in {time.monotonic() - t:.0f}s", flush=True)
    finally:
        run.stop()
    out["log_dir"] = str(log)
    return out


def headline(v: dict) -> dict:
    before, after = v["phase1_before"]["topic"], v["phase2_after"]["topic"]
    b, a = before["failovers_per_100"], after["failovers_per_100"]
    return {
        "topic_failovers_per_100": {"before": b, "after": a,
                                    "after_without_explored": after["failovers_per_100_unexplored"],
                                    "after_heldout": v["phase2_after_heldout"]["topic"]["failovers_per_100"],
                                    "after_replay": v["phase2_after_replay"]["topic"]["failovers_per_100"]},
        "topic_failovers_reduction_x": (round(b / a, 1) if a else "inf") if a is not None else None,
        "topic_failed_calls_per_100": {"before": before["failed_calls_per_100"],
                                       "after": after["failed_calls_per_100"]},
        "topic_p50_ms": {"baseline_no_fault": v["phase0_baseline"]["topic"]["p50_ms"], "before": before["p50_ms"],
                         "after": after["p50_ms"],
                         "after_heldout": v["phase2_after_heldout"]["topic"]["p50_ms"],
                         "after_replay": v["phase2_after_replay"]["topic"]["p50_ms"]},
        "other_failovers_per_100": {"baseline_no_fault": v["phase0_baseline"]["other"]["failovers_per_100"],
                                    "before": v["phase1_before"]["other"]["failovers_per_100"],
                                    "after": v["phase2_after"]["other"]["failovers_per_100"]},
        "other_p50_ms": {"baseline_no_fault": v["phase0_baseline"]["other"]["p50_ms"],
                         "before": v["phase1_before"]["other"]["p50_ms"],
                         "after": v["phase2_after"]["other"]["p50_ms"],
                         "after_heldout": v["phase2_after_heldout"]["other"]["p50_ms"],
                         "after_replay": v["phase2_after_replay"]["other"]["p50_ms"]},
        "other_answered_by": {"baseline_no_fault": v["phase0_baseline"]["other"]["answered_by"],
                              "before": v["phase1_before"]["other"]["answered_by"],
                              "after": v["phase2_after"]["other"]["answered_by"]},
        "topic_first_tried": {"before": before["first_tried"], "after": after["first_tried"]},
        "topic_explored_after": after["explored"],
        **{f"round{n}": later_round(v, n, before["failovers_per_100"]) for n in range(2, 10) if f"round{n}" in v},
    }


def later_round(v: dict, n: int, before: float) -> dict:
    r = v[f"round{n}"]
    after = r[f"phase{n + 1}_after"]
    a = after["topic"]["failovers_per_100"]
    return {"published": r["training"]["published"], "refused": r["training"]["refused"],
            "topic_failovers_per_100": a, "topic_failovers_reduction_x": round(before / a, 1) if a else "inf",
            "topic_failovers_per_100_without_explored": after["topic"]["failovers_per_100_unexplored"],
            "topic_explored": after["topic"]["explored"], "topic_p50_ms": after["topic"]["p50_ms"],
            "other_failovers_per_100": after["other"]["failovers_per_100"], "other_p50_ms": after["other"]["p50_ms"],
            "other_answered_by": after["other"]["answered_by"]}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)} (each on a fresh service)")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    os.environ["SWITCHBOARD_ADMIN_TOKEN"] = TOKEN
    from vocabulary.router_config import ChoiceSpec

    choice = ChoiceSpec()
    started = time.monotonic()
    runs = {}
    if RESULTS.exists() and set(variants) != set(VARIANTS):  # a partial run keeps the other variants' figures
        runs = {k: v for k, v in json.loads(RESULTS.read_text()).get("runs", {}).items() if k in VARIANTS}
    for name in variants:
        t = time.monotonic()
        runs[name] = run_variant(name)
        runs[name]["wall_s"] = round(time.monotonic() - t, 1)
        result = {  # written after each variant: a later one that fails keeps the earlier ones
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
                       f"{platform.release()}, Python {platform.python_version()}; CPU roster (cluster/local.yaml), "
                       "Serve high-throughput mode, requests one at a time",
            "config": {"faulted_model": FAULTED, "chain": ["smollm2", "smollm2-hf"],
                       "faults": json.loads((CAMPAIGNS / "text_topic_faults.json").read_text()),
                       "choice": choice.model_dump(), "max_tokens": 16,
                       "requests": {"text_topic.jsonl": 64, "text_topic_heldout.jsonl": 24}},
            "wall_s": round(time.monotonic() - started, 1), "variants_run": variants,
            "headline": {k: headline(runs[k]) for k in VARIANTS if k in runs},
            "runs": {k: runs[k] for k in VARIANTS if k in runs},
        }
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, h in result["headline"].items():
        f, p = h["topic_failovers_per_100"], h["topic_p50_ms"]
        print(f"[{name}] topic: failovers/100 {f['before']} -> {f['after']} ({h['topic_failovers_reduction_x']}x; "
              f"paraphrases {f['after_heldout']}, replay {f['after_replay']}; {h['topic_explored_after']} explored, "
              f"{f['after_without_explored']} without them); p50 ms: no fault {p['baseline_no_fault']}, before "
              f"{p['before']}, after {p['after']}")
        o, q = h["other_failovers_per_100"], h["other_p50_ms"]
        print(f"[{name}] other: failovers/100 no fault {o['baseline_no_fault']}, before {o['before']}, after "
              f"{o['after']}; p50 ms no fault {q['baseline_no_fault']}, before {q['before']}, after {q['after']}; "
              f"answered by {h['other_answered_by']}")
        for n in range(2, 10):
            if f"round{n}" not in h:
                continue
            r = h[f"round{n}"]
            print(f"[{name}] round {n} (published {r['published']}): topic failovers/100 {r['topic_failovers_per_100']} "
                  f"({r['topic_failovers_reduction_x']}x; {r['topic_explored']} explored), p50 {r['topic_p50_ms']} ms; "
                  f"other failovers/100 {r['other_failovers_per_100']}, p50 {r['other_p50_ms']} ms, answered by "
                  f"{r['other_answered_by']}")
    print(f"wrote {RESULTS} in {result['wall_s']} s")


if __name__ == "__main__":
    main()
