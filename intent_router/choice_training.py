"""Fit the model-choice heads from choice rows (intent_router/learning_data.py) and score a version of
them on held-out rows. scikit-learn at training time only; the result is a `ChoiceHeads`.

Stale evidence. A model whose breaker opened has changed (learning_data.change_points), and what the
log says of it from before may no longer hold: while its breaker was open most requests skipped it,
so a few failures since stand against a long history of successes. Each of its rows from before the
change is reweighed by how far the evidence since agrees with it: P_since(label | x) / P_before(label
| x), from two small regressions on the same features, clipped to [`STALE_FLOOR`, 1]. An old success
on the kind of request the model now fails weighs little; one on requests it still answers keeps its
weight; without `MIN_RECENT_ROWS` rows since the change nothing is reweighed."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import numpy as np

from intent_router.choice_head import ChoiceHeads, FamilyHead, ModelHead, design_matrix
from intent_router.learning_data import ChoiceRow

DEFAULT_CHOICE_C = 3.0  # inverse regularisation of each model's logistic regression
CHOICE_COMPONENTS = 8  # the embedding's principal directions a family's heads see (few rows fit few weights)
EPS = 1e-6
MIN_RECENT_ROWS = 5  # a model's rows since its change point needed before older rows are reweighed
STALE_FLOOR = 0.05  # the least weight an old row keeps


def embed_rows(rows: list[ChoiceRow], encode: Callable[[list[str]], np.ndarray]) -> list[ChoiceRow]:
    """The rows with their excerpt's sentence embedding in their features (each distinct text once)."""
    texts = sorted({r.text for r in rows if r.text})
    vectors = dict(zip(texts, encode(texts))) if texts else {}
    return [dataclasses.replace(r, features=dataclasses.replace(r.features, embedding=vectors.get(r.text)))
            for r in rows]


def _standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale per column over the values present (NaN = missing); a column with nothing present
    or no spread gets mean 0 / scale 1."""
    present = ~np.isnan(x)
    counts = present.sum(axis=0)
    filled = np.where(present, x, 0.0)
    mean = np.divide(filled.sum(axis=0), counts, out=np.zeros(x.shape[1]), where=counts > 0)
    var = np.divide((np.where(present, x - mean, 0.0) ** 2).sum(axis=0), counts, out=np.zeros(x.shape[1]),
                    where=counts > 0)
    scale = np.sqrt(var)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def _principal_directions(x: np.ndarray, dims: int, components: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(center, projection) of the embeddings present in design rows `x`: their mean and their first
    `components` principal directions (fewer when fewer requests); (None, None) with fewer than 2."""
    embeddings = x[:, :dims]
    embeddings = embeddings[~np.isnan(embeddings).any(axis=1)]
    k = min(components, len(embeddings) - 1, dims)
    if k < 1:
        return None, None
    center = embeddings.mean(axis=0)
    _, _, vt = np.linalg.svd(embeddings - center, full_matrices=False)
    return center, vt[:k].T


def _fit(z: np.ndarray, y: np.ndarray, w: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """(weights, bias) of a weighted logistic regression; rows all of one outcome -> a constant head at
    the smoothed rate."""
    positives = int(y.sum())
    if 0 < positives < len(y):
        from sklearn.linear_model import LogisticRegression

        fitted = LogisticRegression(C=c, max_iter=5000).fit(z, y, sample_weight=w)
        return fitted.coef_[0], float(fitted.intercept_[0])
    rate = (float(w[y == 1].sum()) + 1.0) / (float(w.sum()) + 2.0)
    return np.zeros(z.shape[1]), math.log(rate / (1 - rate))


def _chance(z: np.ndarray, fitted: tuple[np.ndarray, float]) -> np.ndarray:
    weights, bias = fitted
    return 1.0 / (1.0 + np.exp(-np.clip(z @ weights + bias, -30, 30)))


def reweigh_stale(z: np.ndarray, y: np.ndarray, w: np.ndarray, ts: np.ndarray, since: float | None,
                  c: float) -> np.ndarray:
    """`w` with the rows from before `since` (and those of unknown time) reweighed by
    P_since(y | z) / P_before(y | z), clipped to [STALE_FLOOR, 1] (see the module's docstring)."""
    if since is None:
        return w
    recent = np.nan_to_num(ts, nan=-np.inf) >= since
    if recent.sum() < MIN_RECENT_ROWS or recent.all():
        return w
    old = ~recent
    p_since = _chance(z[old], _fit(z[recent], y[recent], w[recent], c))
    p_before = _chance(z[old], _fit(z[old], y[old], w[old], c))
    agree_since = np.where(y[old] == 1, p_since, 1 - p_since)
    agree_before = np.maximum(np.where(y[old] == 1, p_before, 1 - p_before), EPS)
    out = w.astype(np.float64).copy()
    out[old] *= np.clip(agree_since / agree_before, STALE_FLOOR, 1.0)
    return out


def fit_choice_heads(rows: list[ChoiceRow], *, c: float = DEFAULT_CHOICE_C, dims: int = 384,
                     components: int | None = CHOICE_COMPONENTS, changes: Mapping[str, float] | None = None
                     ) -> ChoiceHeads:
    """One `FamilyHead` per family in `rows`: the embedding projected onto the family's first
    `components` principal directions (None: the raw embedding), standardised over the family's
    requests; one logistic regression per model, its rows from before the model's change point
    (`changes`: model -> time, learning_data.change_points) reweighed by `reweigh_stale`. A model whose
    rows are all one outcome gets a constant head at its smoothed rate. Rows must carry their
    embeddings (`embed_rows`)."""
    changes = changes or {}
    families: dict[str, FamilyHead] = {}
    for family in sorted({r.family for r in rows}):
        ours = [r for r in rows if r.family == family]
        requests = design_matrix(list({r.request_id: r.features for r in ours}.values()), dims)
        center, projection = _principal_directions(requests, dims, components) if components else (None, None)
        shape = FamilyHead(np.zeros(0), np.ones(0), {}, center, projection)
        mean, scale = _standardisation(shape.project(requests, dims))
        standard = FamilyHead(mean, scale, {}, center, projection)
        models: dict[str, ModelHead] = {}
        for model in sorted({r.model for r in ours}):
            mine = [r for r in ours if r.model == model]
            z = standard.standardise(standard.project(design_matrix([r.features for r in mine], dims), dims))
            y = np.asarray([r.label for r in mine])
            ts = np.asarray([np.nan if r.ts is None else r.ts for r in mine], dtype=np.float64)
            w = reweigh_stale(z, y, np.asarray([r.weight for r in mine], dtype=np.float64), ts,
                              changes.get(model), c)
            weights, bias = _fit(z, y, w, c)
            models[model] = ModelHead(len(mine), int(y.sum()), weights, bias)
        families[family] = FamilyHead(mean, scale, models, center, projection)
    return ChoiceHeads(families, dims=dims)


def predictions(heads: ChoiceHeads | None, rows: list[ChoiceRow]) -> list[float | None]:
    """Each row's predicted chance from `heads` (None where no trusted head covers its model)."""
    out: list[float | None] = []
    for r in rows:
        scores = heads.scores(r.family, [r.model], r.features) if heads is not None else None
        out.append(scores[r.model] if scores else None)
    return out


def log_loss(p: list[float], y: list[int]) -> float:
    return float(np.mean([-math.log(max(EPS, q if t else 1 - q)) for q, t in zip(p, y)])) if p else float("nan")


def accuracy(p: list[float], y: list[int]) -> float:
    return float(np.mean([(q >= 0.5) == bool(t) for q, t in zip(p, y)])) if p else float("nan")


def compare(new: ChoiceHeads, old: ChoiceHeads | None, train: list[ChoiceRow], heldout: list[ChoiceRow],
            changes: Mapping[str, float] | None = None) -> dict[str, dict]:
    """Per family, on the held-out rows both versions cover: log-loss and accuracy of the old and the new
    heads, and of the base rate (each model's training share of good answers) as a reference. A model's
    held-out rows from before its change point (`changes`) describe a model that is no more: they are
    left out of the comparison."""
    changes = changes or {}
    heldout = [r for r in heldout if r.model not in changes or (r.ts is not None and r.ts >= changes[r.model])]
    rates = {}
    for model in {r.model for r in train}:
        mine = [r.label for r in train if r.model == model]
        rates[model] = (sum(mine) + 1) / (len(mine) + 2)
    new_p, old_p = predictions(new, heldout), predictions(old, heldout)
    report: dict[str, dict] = {}
    for family in sorted({r.family for r in heldout} | set(new.families)):
        old_has = old is not None and family in old.families
        idx = [i for i, r in enumerate(heldout) if r.family == family and new_p[i] is not None
               and (not old_has or old_p[i] is not None)]
        y = [heldout[i].label for i in idx]
        entry: dict = {"heldout_rows": sum(r.family == family for r in heldout), "compared_rows": len(idx),
                       "models": {m: h.rows for m, h in new.families[family].models.items()}
                       if family in new.families else {}}
        entry["new"] = _scores([new_p[i] for i in idx], y)
        entry["base_rate"] = _scores([rates.get(heldout[i].model, 0.5) for i in idx], y)
        if old_has:
            entry["old"] = _scores([old_p[i] for i in idx], y)
        report[family] = entry
    return report


def _scores(p: list[float], y: list[int]) -> dict[str, float | None]:
    if not p:
        return {"log_loss": None, "accuracy": None}
    return {"log_loss": round(log_loss(p, y), 4), "accuracy": round(accuracy(p, y), 4)}
