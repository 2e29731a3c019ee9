"""The router's fast tier: hashed word and character n-grams into a multinomial logistic regression,
run with the standard library and numpy in a few tens of microseconds on the event loop.

It answers a request when its most likely intent is at least `threshold` likely (the threshold is
chosen in training, by cross-validation on the train split, as the lowest at which the cascade loses
nothing against MiniLM alone); below it MiniLM decides (intent_router/classifier.py). Features: word
unigrams and bigrams and the character 3- to 5-grams of each word (with its boundaries), of the
lower-cased text, hashed with CRC-32 (stable across processes, unlike `hash()`) into `buckets` columns
with a sign from another bit of the hash, counted sublinearly and L2-normalised. The weights travel in
the versioned head artifact ("fast" section of head-NNNN.json) as base64 float16."""

from __future__ import annotations

import base64
import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

WORD = re.compile(r"\w+")
CHAR_NGRAMS = (3, 4, 5)
DEFAULT_BUCKETS = 1 << 15
MAX_CHARS = 1000  # the router cuts longer input to router.max_chars before it gets here


def ngrams(text: str) -> list[str]:
    """The features of `text`, before hashing."""
    words = WORD.findall(text[:MAX_CHARS].lower())
    out = [f"w {w}" for w in words]
    out += [f"b {a} {b}" for a, b in zip(words, words[1:])]
    for w in words:
        padded = f" {w} "
        for n in CHAR_NGRAMS:
            out += [f"c{padded[i:i + n]}" for i in range(max(1, len(padded) - n + 1))]
    return out


def hashed(text: str, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, values) of the text's sparse feature row: signed sublinear counts, L2-normalised."""
    counts: dict[int, float] = {}
    for feature in ngrams(text):
        h = zlib.crc32(feature.encode())
        column = h % buckets
        counts[column] = counts.get(column, 0.0) + (1.0 if h & 0x80000000 else -1.0)
    if not counts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    columns = np.fromiter(counts, dtype=np.int64, count=len(counts))
    raw = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
    values = np.sign(raw) * (1.0 + np.log(np.abs(raw), where=raw != 0, out=np.zeros_like(raw)))
    values[raw == 0] = 0.0
    norm = float(np.sqrt((values * values).sum()))
    return columns, values / norm if norm > 0 else values


def design(texts: list[str], buckets: int):
    """The sparse (scipy CSR) matrix of `texts`, for training."""
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0], [], []
    for text in texts:
        columns, values = hashed(text, buckets)
        indices.extend(columns.tolist())
        data.extend(values.tolist())
        indptr.append(len(indices))
    return csr_matrix((np.asarray(data, dtype=np.float64), indices, indptr), shape=(len(texts), buckets))


@dataclass(frozen=True)
class NgramHead:
    labels: tuple[str, ...]
    weights: np.ndarray  # (buckets, labels): one row per column, so a text's rows are gathered at once
    bias: np.ndarray  # (labels,)
    threshold: float  # answer when the best intent is at least this likely; else MiniLM decides
    meta: dict[str, Any]

    @property
    def buckets(self) -> int:
        return self.weights.shape[0]

    def probabilities(self, text: str) -> np.ndarray:
        columns, values = hashed(text, self.buckets)
        logits = values @ self.weights[columns] + self.bias if len(columns) else self.bias.copy()
        logits = logits - logits.max()
        exp = np.exp(logits)
        return exp / exp.sum()

    def to_json(self) -> dict[str, Any]:
        return {"kind": "hashed-ngram-logreg", "labels": list(self.labels), "buckets": self.buckets,
                "threshold": self.threshold, "char_ngrams": list(CHAR_NGRAMS),
                "weights_f16": base64.b64encode(self.weights.astype("<f2").tobytes()).decode(),
                "bias": [float(f"{b:.7g}") for b in self.bias], "meta": self.meta}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "NgramHead":
        if data.get("kind") != "hashed-ngram-logreg" or list(data.get("char_ngrams", [])) != list(CHAR_NGRAMS):
            raise ValueError(f"not a fast head this code reads: {data.get('kind')!r}, {data.get('char_ngrams')!r}")
        labels = tuple(data["labels"])
        weights = np.frombuffer(base64.b64decode(data["weights_f16"]), dtype="<f2").astype(np.float32)
        weights = weights.reshape(int(data["buckets"]), len(labels))
        return cls(labels, weights, np.asarray(data["bias"], dtype=np.float32), float(data["threshold"]),
                   dict(data.get("meta", {})))


def fit_ngram_head(texts: list[str], labels: list[str], *, c: float, buckets: int = DEFAULT_BUCKETS,
                   threshold: float = 1.0, meta: dict[str, Any] | None = None) -> NgramHead:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=5000).fit(design(texts, buckets), labels)
    coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
    if len(model.classes_) == 2:  # one row (the second class' log-odds): a softmax over (0, it) is the same
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weights = np.asarray(coef.T, dtype=np.float32)
    return NgramHead(tuple(model.classes_), weights.astype(np.float16).astype(np.float32),
                     np.asarray(intercept, dtype=np.float32), threshold, dict(meta or {}))


def cascade_threshold(fast_probs: np.ndarray, fast_labels: tuple[str, ...], slow_predicted: list[str],
                      truth: list[str], candidates: tuple[float, ...]) -> dict[str, Any]:
    """The lowest candidate threshold at which the fast tier, where it is that sure, is never wrong on a
    row the slow tier gets right (rows neither was trained on): the cascade then adds no error of its
    own, only the slow tier's. With each candidate's rows right, rows broken (fast wrong, slow right)
    and the share the fast tier answers."""
    best = np.asarray(fast_probs).argmax(axis=1)
    sure = np.asarray(fast_probs).max(axis=1)
    fast_predicted = [fast_labels[i] for i in best]
    slow_right = sum(p == t for p, t in zip(slow_predicted, truth))
    table = []
    for threshold in sorted(candidates):
        answers = sure >= threshold
        chosen = [f if a else p for f, a, p in zip(fast_predicted, answers, slow_predicted)]
        broken = int(sum(a and f != t and p == t for f, a, p, t in zip(fast_predicted, answers, slow_predicted, truth)))
        table.append({"threshold": threshold, "right": sum(c == t for c, t in zip(chosen, truth)), "broken": broken,
                      "fast_share": round(float(answers.mean()), 4)})
    fit = next((row for row in table if row["broken"] == 0), table[-1])
    return {"threshold": fit["threshold"], "rows": len(truth), "slow_right": slow_right, "candidates": table}
