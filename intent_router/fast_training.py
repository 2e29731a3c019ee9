"""Training the router's fast tier (intent_router/ngram_head.py) beside the MiniLM head: its
regularisation and the cascade's threshold are chosen by stratified 5-fold cross-validation on the
train split only (the held-out split judges the result, it never tunes it). In each fold both tiers
are trained on four fifths and predict the fifth; the threshold is the lowest at which the cascade is
right on those predictions at least as often as MiniLM alone."""

from __future__ import annotations

from typing import Any

import numpy as np

from intent_router.head import Head
from intent_router.ngram_head import DEFAULT_BUCKETS, NgramHead, cascade_threshold, fit_ngram_head

FOLDS = 5
# The n-gram head's regularisation: 30 was the most accurate of 3, 10, 30 and 100 in 5-fold CV on the train
# split (0.901, 0.913, 0.923, 0.920); pass `cs` to search again (each value costs a fit per fold).
NGRAM_C = 30.0
THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.01)


class FeatureCache:
    """An encoder's features of a fixed set of texts, computed once (`encode` answers from them)."""

    def __init__(self, classifier, texts: list[str], layers: tuple[int, ...]) -> None:
        unique = list(dict.fromkeys(texts))
        self._rows = dict(zip(unique, classifier.encode(unique, layers)))
        self._layers = tuple(layers)

    def encode(self, texts: list[str], layers: tuple[int, ...]) -> np.ndarray:
        if tuple(layers) != self._layers:
            raise ValueError("the cache holds other layers' features")
        return np.vstack([self._rows[t] for t in texts])


def folds(labels: list[str], k: int = FOLDS) -> list[np.ndarray]:
    """Stratified, deterministic: each label's rows dealt round-robin into k folds, in their order."""
    out: list[list[int]] = [[] for _ in range(k)]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        out[seen.get(label, 0) % k].append(i)
        seen[label] = seen.get(label, 0) + 1
    return [np.asarray(f) for f in out]


def fit_fast_tier(train: list[dict[str, Any]], slow_fit, features: FeatureCache, *,
                  buckets: int = DEFAULT_BUCKETS, cs: tuple[float, ...] = (NGRAM_C,)) -> NgramHead:
    """`slow_fit(rows, features) -> Head`: how the MiniLM head is trained (for its fold predictions)."""
    texts = [r["text"] for r in train]
    labels = [r["label"] for r in train]
    split = folds(labels)
    slow_predicted: list[str | None] = [None] * len(train)
    fast_probs: dict[float, np.ndarray] = {c: np.zeros((len(train), len(set(labels)))) for c in cs}
    fast_labels: tuple[str, ...] | None = None
    for held in split:
        inside = np.setdiff1d(np.arange(len(train)), held)
        rows_in = [train[i] for i in inside]
        slow: Head = slow_fit(rows_in, features)
        probs = slow.probabilities(features.encode([texts[i] for i in held], slow.layers))
        for i, p in zip(held, probs.argmax(axis=1)):
            slow_predicted[i] = slow.labels[p]
        for c in cs:
            fast = fit_ngram_head([texts[i] for i in inside], [labels[i] for i in inside], c=c, buckets=buckets)
            fast_labels = fast.labels
            fast_probs[c][held] = np.vstack([fast.probabilities(texts[i]) for i in held])
    accuracy = {c: float(np.mean([fast_labels[j] == t for j, t in zip(fast_probs[c].argmax(axis=1), labels)]))
                for c in cs}
    best_c = max(cs, key=lambda c: (accuracy[c], -c))
    chosen = cascade_threshold(fast_probs[best_c], fast_labels, slow_predicted, labels, THRESHOLDS)
    meta = {"C": best_c, "cv_folds": FOLDS, "cv_fast_accuracy": {str(c): round(a, 4) for c, a in accuracy.items()},
            "cv_minilm_right": chosen["slow_right"], "cv_rows": chosen["rows"], "cv_thresholds": chosen["candidates"],
            "train_rows": len(train)}
    return fit_ngram_head(texts, labels, c=best_c, buckets=buckets, threshold=chosen["threshold"], meta=meta)


def cascade_accuracy(head: Head, fast: NgramHead | None, rows: list[dict[str, Any]], features) -> dict[str, Any]:
    """Held-out accuracy of MiniLM alone and of the cascade, and the share the fast tier answers."""
    if not rows:
        return {"minilm": None, "cascade": None, "fast_share": None}
    texts = [r["text"] for r in rows]
    probs = head.probabilities(features.encode(texts, head.layers))
    slow = [head.labels[i] for i in probs.argmax(axis=1)]
    if fast is None:
        right = sum(p == r["label"] for p, r in zip(slow, rows))
        return {"minilm": round(right / len(rows), 4), "cascade": round(right / len(rows), 4), "fast_share": 0.0}
    chosen, answered = [], 0
    for text, s in zip(texts, slow):
        p = fast.probabilities(text)
        if p.max() >= fast.threshold:
            chosen.append(fast.labels[int(p.argmax())])
            answered += 1
        else:
            chosen.append(s)
    return {"minilm": round(sum(p == r["label"] for p, r in zip(slow, rows)) / len(rows), 4),
            "cascade": round(sum(p == r["label"] for p, r in zip(chosen, rows)) / len(rows), 4),
            "fast_share": round(answered / len(rows), 4)}
