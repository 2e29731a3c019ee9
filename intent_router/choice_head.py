"""The model-choice heads: per family (llm, vision, stt, tts, search) and per model of it, the chance the
model answers well for a request, from the request's features. Small logistic regressions, read and
run with numpy (trained with scikit-learn in intent_router/choice_training.py), stored in the
"choice" section of the versioned head artifact (head-NNNN.json): one version is the intent head and
the choice heads together, and LATEST switches both.

Features: the request text's sentence embedding (all-MiniLM-L6-v2, mean-pooled, normalised; a missing
one counts as the training mean) and the numeric facts of `NUMERIC`, standardised per family. A family
head may carry a projection of the embedding onto the family's main directions (its requests'
principal components, fitted in training): a few hundred rows of evidence cannot fit 384 weights per
model, but they can fit a handful, which then speak for whole topics rather than single texts."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from intent_router.head import Head, latest_path, pointer_stamp

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")

EMBEDDING_DIMS = 384
NUMERIC: tuple[str, ...] = ("log_chars", "has_image", "has_audio", "rotation", "rotation_missing", "contrast",
                            "contrast_missing", "log_audio_seconds", "audio_seconds_missing")


@dataclass(frozen=True)
class ChoiceFeatures:
    """What the choice heads know of a request. `image_rotation` in degrees as measured (any sign or
    turn; the heads see its distance from upright), None when not measured."""

    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    input_chars: int = 0
    has_image: bool = False
    has_audio: bool = False
    image_rotation: float | None = None
    image_contrast: float | None = None
    audio_seconds: float | None = None

    @classmethod
    def from_line(cls, line: Mapping[str, Any], embedding: np.ndarray | None = None) -> "ChoiceFeatures":
        """The features of a request-log line (the embedding is computed apart, from its excerpt)."""
        attachments = line.get("attachments") or {}
        image = attachments.get("image") or {}
        return cls(embedding, int(line.get("input_chars") or 0), bool(attachments.get("images")),
                   bool(attachments.get("audio")), _number(image.get("rotation")), _number(image.get("contrast")),
                   _number(attachments.get("audio_seconds")))

    def numeric(self) -> np.ndarray:
        rotation = None if self.image_rotation is None else abs((self.image_rotation + 180.0) % 360.0 - 180.0)
        values = [math.log1p(max(0, self.input_chars)), float(self.has_image), float(self.has_audio),
                  rotation or 0.0, float(rotation is None), self.image_contrast or 0.0,
                  float(self.image_contrast is None),
                  math.log1p(max(0.0, self.audio_seconds)) if self.audio_seconds is not None else 0.0,
                  float(self.audio_seconds is None)]
        return np.asarray(values, dtype=np.float64)

    def row(self, dims: int = EMBEDDING_DIMS) -> np.ndarray:
        """Embedding then numeric facts; NaN where the embedding is missing (or of another size)."""
        embedding = self.embedding
        if embedding is None or np.shape(embedding) != (dims,):
            embedding = np.full(dims, np.nan)
        return np.concatenate([np.asarray(embedding, dtype=np.float64), self.numeric()])


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def design_matrix(features: list[ChoiceFeatures], dims: int = EMBEDDING_DIMS) -> np.ndarray:
    return np.vstack([f.row(dims) for f in features]) if features else np.empty((0, dims + len(NUMERIC)))


@dataclass(frozen=True)
class ModelHead:
    rows: int  # training rows (evidence) this model had
    positives: int
    weights: np.ndarray  # over the family's standardised features
    bias: float


@dataclass(frozen=True)
class FamilyHead:
    mean: np.ndarray  # over the head's features: the projected embedding (or the raw one), then NUMERIC
    scale: np.ndarray
    models: dict[str, ModelHead]
    center: np.ndarray | None = None  # (dims,): the embedding's training mean, with `projection`
    projection: np.ndarray | None = None  # (dims, components); None: the raw embedding is the feature

    def project(self, x: np.ndarray, dims: int) -> np.ndarray:
        """(rows, dims + NUMERIC) design rows -> the head's features (NaN stays NaN: missing)."""
        if self.projection is None:
            return x
        return np.concatenate([(x[:, :dims] - self.center) @ self.projection, x[:, dims:]], axis=1)

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """(rows, features) -> standardised; a missing value (NaN) is the training mean, 0."""
        return np.nan_to_num((x - self.mean) / self.scale, nan=0.0)

    def probability(self, model: str, z: np.ndarray) -> np.ndarray:
        head = self.models[model]
        return 1.0 / (1.0 + np.exp(-np.clip(z @ head.weights + head.bias, -30, 30)))


class ChoiceHeads:
    """Serving side: `scores(family, models, features)` -> {model: chance it answers well} for the
    models whose head has at least `min_rows` rows of evidence; None when there are none."""

    def __init__(self, families: dict[str, FamilyHead], *, dims: int = EMBEDDING_DIMS, min_rows: int = 1,
                 version: int | None = None) -> None:
        self.families = families
        self.dims = dims
        self.min_rows = min_rows
        self.version = version

    def scores(self, family: str, models: list[str], features: ChoiceFeatures) -> dict[str, float] | None:
        head = self.families.get(family)
        if head is None:
            return None
        trusted = [m for m in models if m in head.models and head.models[m].rows >= self.min_rows]
        if not trusted:
            return None
        z = head.standardise(head.project(features.row(self.dims)[None, :], self.dims))
        return {m: round(float(head.probability(m, z)[0]), 4) for m in trusted}

    def to_json(self) -> dict[str, Any]:
        return {"dims": self.dims, "numeric": list(NUMERIC), "families": {
            family: {"mean": _floats(h.mean), "scale": _floats(h.scale), "models": {
                name: {"rows": m.rows, "positives": m.positives, "weights": _floats(m.weights),
                       "bias": float(f"{m.bias:.7g}")} for name, m in h.models.items()},
                **({"center": _floats(h.center), "projection": [_floats(col) for col in h.projection.T]}
                   if h.projection is not None else {})}
            for family, h in self.families.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, min_rows: int = 1, version: int | None = None) -> "ChoiceHeads":
        if list(data.get("numeric", ())) != list(NUMERIC):
            raise ValueError(f"choice heads over features {data.get('numeric')}, this code computes {list(NUMERIC)}")
        families = {}
        for family, h in data["families"].items():
            models = {name: ModelHead(int(m["rows"]), int(m["positives"]), np.asarray(m["weights"], dtype=np.float64),
                                      float(m["bias"])) for name, m in h["models"].items()}
            projection = np.asarray(h["projection"], dtype=np.float64).T if h.get("projection") else None
            center = np.asarray(h["center"], dtype=np.float64) if projection is not None else None
            families[family] = FamilyHead(np.asarray(h["mean"], dtype=np.float64),
                                          np.asarray(h["scale"], dtype=np.float64), models, center, projection)
        return cls(families, dims=int(data["dims"]), min_rows=min_rows, version=version)

    @classmethod
    def from_head(cls, head: Head, *, min_rows: int = 1) -> "ChoiceHeads | None":
        return cls.from_json(head.choice, min_rows=min_rows, version=head.version) if head.choice else None


def _floats(a: np.ndarray) -> list[float]:
    return [float(f"{x:.7g}") for x in np.asarray(a, dtype=np.float64)]


class LatestChoiceHeads:
    """The choice heads of the published version (LATEST in the artifact folder), re-read when LATEST
    changes; the pointer is looked at no more often than every `reload_check_s`. For the ingress:
    numpy only, whichever process holds the classifier."""

    def __init__(self, folder: Path, *, min_rows: int, reload_check_s: float = 2.0) -> None:
        self._folder = folder
        self._min_rows = min_rows
        self._reload_check_s = reload_check_s
        self._checked_at: float | None = None
        self._stamp: float | None = None
        self._heads: ChoiceHeads | None = None

    def current(self) -> ChoiceHeads | None:
        now = time.monotonic()
        if self._checked_at is not None and now - self._checked_at < self._reload_check_s:
            return self._heads
        self._checked_at = now
        stamp = pointer_stamp(self._folder)
        if stamp == self._stamp:
            return self._heads
        path = latest_path(self._folder)
        try:
            heads = ChoiceHeads.from_head(Head.read(path), min_rows=self._min_rows) if path else None
        except (OSError, ValueError, KeyError) as exc:  # a broken artifact must not stop serving: keep the last
            logger.warning("choice heads not reloaded",
                           extra={"path": str(path), "error": f"{type(exc).__name__}: {exc}"})
            return self._heads
        if heads is not None and (self._heads is None or heads.version != self._heads.version):
            logger.info("choice heads loaded", extra={"version": heads.version, "families": sorted(heads.families)})
        self._heads, self._stamp = heads, stamp
        return heads
