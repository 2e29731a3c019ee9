"""Fit the model-choice heads from choice rows (intent_router/learning_data.py) and score a version of
them on held-out rows. scikit-learn at training time only; the result is a `ChoiceHeads`."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from intent_router.choice_head import ChoiceHeads, FamilyHead, ModelHead, design_matrix
from intent_router.learning_data import ChoiceRow

DEFAULT_CHOICE_C = 0.1  # inverse regularisation of each model's logistic regression
EPS = 1e-6


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


def fit_choice_heads(rows: list[ChoiceRow], *, c: float = DEFAULT_CHOICE_C, dims: int = 384) -> ChoiceHeads:
    """One `FamilyHead` per family in `rows` (standardised over the family's requests), one logistic
    regression per model; a model whose rows are all one outcome gets a constant head at its smoothed
    rate. Rows must carry their embeddings (`embed_rows`)."""
    from sklearn.linear_model import LogisticRegression

    families: dict[str, FamilyHead] = {}
    for family in sorted({r.family for r in rows}):
        ours = [r for r in rows if r.family == family]
        requests = {r.request_id: r.features for r in ours}
        mean, scale = _standardisation(design_matrix(list(requests.values()), dims))
        standard = FamilyHead(mean, scale, {})
        models: dict[str, ModelHead] = {}
        for model in sorted({r.model for r in ours}):
            mine = [r for r in ours if r.model == model]
            z = standard.standardise(design_matrix([r.features for r in mine], dims))
            y = np.asarray([r.label for r in mine])
            w = np.asarray([r.weight for r in mine])
            positives = int(y.sum())
            if 0 < positives < len(y):
                fitted = LogisticRegression(C=c, max_iter=5000).fit(z, y, sample_weight=w)
                weights, bias = fitted.coef_[0], float(fitted.intercept_[0])
            else:
                rate = (float(w[y == 1].sum()) + 1.0) / (float(w.sum()) + 2.0)
                weights, bias = np.zeros(z.shape[1]), math.log(rate / (1 - rate))
            models[model] = ModelHead(len(mine), positives, weights, bias)
        families[family] = FamilyHead(mean, scale, models)
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


def compare(new: ChoiceHeads, old: ChoiceHeads | None, train: list[ChoiceRow], heldout: list[ChoiceRow]
            ) -> dict[str, dict]:
    """Per family, on the held-out rows both versions cover: log-loss and accuracy of the old and the new
    heads, and of the base rate (each model's training share of good answers) as a reference."""
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
