""""No bucket for this" (`switchboard buckets`): the requests the router classified under
`router.min_confidence`, clustered by their sentence embeddings (all-MiniLM-L6-v2). A large cluster is
a kind of request no route fits well: the signal for a new route or model."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

NOT_CLASSIFIED = {"attachment", "model", "empty", "fallback"}  # decisions the classifier did not make
DISTANCE_THRESHOLD = 0.75  # average cosine distance under which clusters merge, when no k is given (MiniLM:
# paraphrases of one topic are about 0.4-0.7 apart, unrelated requests about 0.9)


@dataclass(frozen=True)
class LowConfidence:
    request_id: str
    text: str
    confidence: float
    guess: str | None  # the intent the classifier leaned to


@dataclass(frozen=True)
class Cluster:
    size: int
    examples: list[str]  # distinct texts, nearest the cluster's centre first
    request_ids: list[str]
    guesses: dict[str, int]  # the intents the classifier leaned to, counted
    mean_confidence: float

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "examples": self.examples, "guesses": self.guesses,
                "mean_confidence": self.mean_confidence, "request_ids": self.request_ids}


def low_confidence(lines: Iterable[Mapping[str, Any]], min_confidence: float) -> list[LowConfidence]:
    out = []
    for line in lines:
        route = line.get("route") or {}
        confidence = route.get("confidence")
        text = (line.get("excerpt") or "").strip()
        if route.get("classifier") in NOT_CLASSIFIED or not isinstance(confidence, (int, float)) or not text:
            continue
        if confidence < min_confidence:
            scores = route.get("scores") or {}
            guess = max(scores, key=scores.get) if scores else None
            out.append(LowConfidence(str(line.get("request_id")), text, float(confidence), guess))
    return out


def cluster(items: list[LowConfidence], embed: Callable[[list[str]], np.ndarray], *, k: int | None = None,
            examples: int = 3) -> list[Cluster]:
    """KMeans with `k` clusters (at most one per item); without k, average-linkage agglomerative clustering
    on cosine distance cut at DISTANCE_THRESHOLD. Largest cluster first."""
    if not items:
        return []
    vectors = np.asarray(embed([i.text for i in items]), dtype=np.float64)
    if len(items) == 1:
        labels = np.zeros(1, dtype=int)
    elif k is not None:
        from sklearn.cluster import KMeans

        labels = KMeans(n_clusters=min(k, len(items)), n_init=10, random_state=0).fit_predict(vectors)
    else:
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                         distance_threshold=DISTANCE_THRESHOLD).fit_predict(vectors)
    clusters = []
    for label in sorted(set(labels.tolist())):
        members = [i for i, lab in enumerate(labels) if lab == label]
        centre = vectors[members].mean(axis=0)
        nearest = sorted(members, key=lambda i: -float(vectors[i] @ centre))
        texts = list(dict.fromkeys(items[i].text for i in nearest))[:examples]
        clusters.append(Cluster(len(members), texts, [items[i].request_id for i in members],
                                dict(Counter(items[i].guess for i in members if items[i].guess).most_common()),
                                round(float(np.mean([items[i].confidence for i in members])), 4)))
    return sorted(clusters, key=lambda c: -c.size)


def format_clusters(clusters: list[Cluster], total: int) -> str:
    if not clusters:
        return "no request was classified under the confidence threshold"
    lines = [f"{total} requests under the confidence threshold, {len(clusters)} clusters"]
    for n, c in enumerate(clusters, 1):
        leaning = ", ".join(f"{g} {count}" for g, count in c.guesses.items()) or "-"
        lines.append(f"\n#{n}  size {c.size}  mean confidence {c.mean_confidence:.2f}  leaning: {leaning}")
        lines += [f"    - {text[:160]}" for text in c.examples]
    return "\n".join(lines)
