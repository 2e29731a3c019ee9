"""What each tier of the router's cascade costs and how accurate it is, in one process, one thread, on
the held-out split (data/router/heldout.jsonl), with the shipped artifact (intent_router/head_artifacts):

- MiniLM alone (the fast tier off, no cache): what every `auto` request paid before the cascade;
- the fast tier alone (hashed n-grams; its own answer for every text, however unsure);
- the cascade as it serves (fast tier where it is sure, MiniLM elsewhere; no cache), with the threshold
  the artifact carries, and at a few other thresholds (accuracy and the share the fast tier answers);
- a cache hit (the same text again);
- the model-choice heads' ordering of a chain (what the learning loop adds to a routed request): three models'
  heads over the 384-d embedding and the numeric facts, random weights of the trained shape.

Cost is CPU time per text on this thread (time.process_time), the median of `--rounds` passes over the
split. Prints a table and writes loadtests/results/router_tiers.json.

    flock /tmp/switchboard-heavy.lock .venv/bin/python loadtests/bench_router_tiers.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from intent_router.classifier import EmbeddingClassifier  # noqa: E402
from intent_router.training import read_rows  # noqa: E402
from vocabulary.router_config import EmbeddingClassifierSpec  # noqa: E402

RESULTS = ROOT / "loadtests" / "results" / "router_tiers.json"
HELDOUT = ROOT / "data" / "router" / "heldout.jsonl"
THRESHOLDS = (0.8, 0.9, 0.94, 0.96, 0.98, 1.01)


def classifier(encoder=None, **spec) -> EmbeddingClassifier:
    c = EmbeddingClassifier(EmbeddingClassifierSpec(kind="embedding", **spec))
    if encoder is None:
        c.load_encoder()
    else:
        c._encoder = encoder
    c._reload(force=True)
    return c


def measure(c: EmbeddingClassifier, texts: list[str], labels: list[str], rounds: int, *, clear: bool = True):
    """(accuracy, CPU ms per text median over rounds, tiers used)."""
    async def one_pass():
        out = []
        for text in texts:
            out.append(await c.classify(text))
        return out

    costs, results = [], []
    for _ in range(rounds):
        if clear:
            c._cache.clear()
        started = time.process_time()
        results = asyncio.run(one_pass())
        costs.append((time.process_time() - started) * 1000 / len(texts))
    right = sum(r.intent == label for r, label in zip(results, labels))
    tiers: dict[str, int] = {}
    for r in results:
        tiers[r.meta.get("tier", "?")] = tiers.get(r.meta.get("tier", "?"), 0) + 1
    return round(right / len(texts), 4), round(statistics.median(costs), 3), tiers


def choice_heads_cost(n: int = 5000) -> float:
    import numpy as np

    from intent_router.choice_head import EMBEDDING_DIMS, NUMERIC, ChoiceFeatures, ChoiceHeads, FamilyHead, ModelHead

    width = EMBEDDING_DIMS + len(NUMERIC)
    rng = np.random.default_rng(0)
    family = FamilyHead(np.zeros(width), np.ones(width),
                        {m: ModelHead(100, 60, rng.normal(size=width), 0.1) for m in ("a", "b", "c")})
    heads = ChoiceHeads({"llm": family}, dims=EMBEDDING_DIMS, min_rows=1)
    features = ChoiceFeatures(embedding=rng.normal(size=EMBEDDING_DIMS), input_chars=120)
    started = time.process_time()
    for _ in range(n):
        heads.scores("llm", ["a", "b", "c"], features)
    return round((time.process_time() - started) / n * 1e6, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = read_rows(HELDOUT)
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]

    cascade = classifier(cache_entries=0)
    encoder = cascade._encoder
    fast = cascade._fast
    minilm = classifier(encoder, cache_entries=0, fast_tier={"enabled": False})
    table = []
    acc, cost, tiers = measure(minilm, texts, labels, args.rounds)
    table.append({"tier": "MiniLM alone (before)", "accuracy": acc, "cpu_ms_per_text": cost, "tiers": tiers})

    costs = []
    for _ in range(args.rounds):
        started = time.process_time()
        predicted = [fast.labels[int(fast.probabilities(t).argmax())] for t in texts]
        costs.append((time.process_time() - started) * 1000 / len(texts))
    table.append({"tier": "fast tier alone (every text, however unsure)",
                  "accuracy": round(sum(p == label for p, label in zip(predicted, labels)) / len(texts), 4),
                  "cpu_ms_per_text": round(statistics.median(costs), 3), "tiers": {"fast": len(texts)}})

    acc, cost, tiers = measure(cascade, texts, labels, args.rounds)
    table.append({"tier": f"cascade as shipped (threshold {fast.threshold})", "accuracy": acc,
                  "cpu_ms_per_text": cost, "tiers": tiers, "fast_share": round(tiers.get("fast", 0) / len(texts), 4)})
    sweep = []
    for threshold in THRESHOLDS:
        swept = classifier(encoder, cache_entries=0, fast_tier={"min_confidence": threshold})
        acc, cost, tiers = measure(swept, texts, labels, 1)
        sweep.append({"threshold": threshold, "accuracy": acc, "cpu_ms_per_text": cost,
                      "fast_share": round(tiers.get("fast", 0) / len(texts), 4)})

    cached = classifier(encoder, cache_entries=4096)
    measure(cached, texts, labels, 1)  # fill the cache
    acc, cost, tiers = measure(cached, texts, labels, args.rounds, clear=False)
    table.append({"tier": "cache hit (the same text again)", "accuracy": acc, "cpu_ms_per_text": cost,
                  "tiers": tiers})

    choice_us = choice_heads_cost()
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": len(texts),
              "rounds": args.rounds, "head_version": cascade.version(), "table": table, "threshold_sweep": sweep,
              "choice_heads_us_per_request": choice_us}
    print(f"{'tier':52} {'accuracy':>8} {'CPU ms/text':>11}  tiers")
    for r in table:
        print(f"{r['tier']:52} {r['accuracy']:8.4f} {r['cpu_ms_per_text']:11.3f}  {r['tiers']}")
    print("\nthreshold sweep (no cache):")
    for r in sweep:
        print(f"  {r['threshold']:5.2f}  accuracy {r['accuracy']:.4f}  fast share {r['fast_share']:.2%}  "
              f"{r['cpu_ms_per_text']:.3f} ms/text")
    print(f"\nchoice heads, a chain of three models: {choice_us} us per request")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
