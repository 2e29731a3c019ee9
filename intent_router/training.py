"""Fit the router's intent head (`switchboard train-router`, intent_router/publishing.py) and evaluate a
router (`eval-router`)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from intent_router.head import Head, write_head
from vocabulary.routes import INTENTS


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("label") not in INTENTS or not isinstance(row.get("text"), str):
            raise ValueError(f"{path}:{n}: need a text and a label in {INTENTS}")
        rows.append(row)
    return rows


DEFAULT_LAYERS = (0, 1, 2, 3, 4, 5, 6)  # every hidden state; chosen by 5-fold CV on the train split
DEFAULT_C = 0.03  # likewise


def fit_head(train: list[dict[str, Any]], classifier, *, c: float = DEFAULT_C,
             layers: tuple[int, ...] = DEFAULT_LAYERS) -> Head:
    """Standardised logistic regression on the encoder features of `train` rows ({"text", "label"}):
    an unpublished head (version 0), with the same arithmetic as a published one."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = classifier.encode([r["text"] for r in train], layers)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x), [r["label"] for r in train])
    as32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return Head(0, tuple(model.classes_), tuple(layers), as32(scaler.mean_), as32(scaler.scale_), as32(model.coef_),
                as32(model.intercept_), {"train_rows": len(train), "C": c})


def head_accuracy(head: Head, rows: list[dict[str, Any]], classifier) -> float | None:
    """The share of `rows` whose label is the head's most likely intent (None without rows)."""
    if not rows:
        return None
    probs = head.probabilities(classifier.encode([r["text"] for r in rows], head.layers))
    predicted = [head.labels[i] for i in probs.argmax(axis=1)]
    return round(sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows), 4)


def publish_head(folder: Path, head: Head, meta: dict[str, Any], choice: dict[str, Any] | None = None,
                 fast: dict[str, Any] | None = None) -> Path:
    return write_head(folder, list(head.labels), list(head.layers), head.mean, head.scale, head.weights, head.bias,
                      meta, choice, fast)


# ---- evaluation ----------------------------------------------------------------------------------

def _tiny_png() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _tiny_wav() -> str:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(1600, dtype=np.int16), 16000, format="WAV")
    return base64.b64encode(buf.getvalue()).decode()


def chat_body(row: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body an eval row stands for (attachments as real content parts)."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": row["text"]}]
    if row.get("attachment") == "image":
        parts.append({"type": "image_url", "image_url": {"url": _tiny_png()}})
    elif row.get("attachment") == "audio":
        parts.append({"type": "input_audio", "input_audio": {"data": _tiny_wav(), "format": "wav"}})
    return {"model": "auto", "messages": [{"role": "user", "content": parts}]}


def report(rows: list[dict], predicted: list[str], latencies_ms: list[float]) -> dict[str, Any]:
    labels = list(INTENTS)
    confusion = {t: {p: 0 for p in labels} for t in labels}
    for row, p in zip(rows, predicted):
        confusion[row["label"]][p] += 1
    per_class = {}
    for label in labels:
        tp = confusion[label][label]
        predicted_as = sum(confusion[t][label] for t in labels)
        actual = sum(confusion[label].values())
        per_class[label] = {"precision": round(tp / predicted_as, 4) if predicted_as else None,
                            "recall": round(tp / actual, 4) if actual else None, "support": actual}
    ordered = sorted(latencies_ms)
    pct = lambda q: round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))], 2)  # noqa: E731
    return {"n": len(rows), "accuracy": round(sum(r["label"] == p for r, p in zip(rows, predicted)) / len(rows), 4),
            "per_class": per_class, "confusion": confusion,
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "mean": round(statistics.fmean(ordered), 2)}}


def format_report(result: dict[str, Any]) -> str:
    labels = list(INTENTS)
    lines = [f"rows {result['n']}   accuracy {result['accuracy']:.4f}   latency p50 {result['latency_ms']['p50']} ms"
             f"   p99 {result['latency_ms']['p99']} ms", "", f"{'class':8} {'precision':>9} {'recall':>7} {'n':>4}"]
    for label in labels:
        c = result["per_class"][label]
        fmt = lambda v: f"{v:.4f}" if v is not None else "   -  "  # noqa: E731
        lines.append(f"{label:8} {fmt(c['precision']):>9} {fmt(c['recall']):>7} {c['support']:>4}")
    lines += ["", "confusion (rows: true, columns: predicted)", " " * 9 + "".join(f"{p:>8}" for p in labels)]
    for t in labels:
        lines.append(f"{t:8} " + "".join(f"{result['confusion'][t][p]:>8}" for p in labels))
    return "\n".join(lines)


def evaluate_http(rows: list[dict], url: str) -> dict[str, Any]:
    import httpx

    predicted, latencies = [], []
    with httpx.Client(base_url=url, timeout=30) as client:
        for row in rows:
            started = time.perf_counter()
            r = client.post("/api/classify", json=chat_body(row))
            latencies.append((time.perf_counter() - started) * 1000)
            r.raise_for_status()
            predicted.append(r.json()["intent"])
    return report(rows, predicted, latencies)


def evaluate_in_process(rows: list[dict], router_spec) -> dict[str, Any]:
    from graphs.routing import RequestFeatures, decide
    from intent_router.classifier import as_dict, make_classifier

    async def run():
        classifier = make_classifier(router_spec)
        await classifier.start()

        async def classify(text):
            return as_dict(await classifier.classify(text))

        predicted, latencies = [], []
        for row in rows:
            features = RequestFeatures(row["text"], has_image=row.get("attachment") == "image",
                                       has_audio=row.get("attachment") == "audio")
            started = time.perf_counter()
            decision = await decide(features, classify, min_confidence=router_spec.min_confidence,
                                    max_chars=router_spec.max_chars)
            latencies.append((time.perf_counter() - started) * 1000)
            predicted.append(decision.intent)
        await classifier.close()
        return report(rows, predicted, latencies)

    return asyncio.run(run())
