"""The router's trained head: a versioned JSON artifact, read with numpy only. It holds which
encoder features it was trained on (mean- and max-pooled hidden states of some MiniLM layers),
the standardisation of those features, and multinomial logistic-regression weights. `LATEST` in the artifact folder names the
current version; writing a new version and then `LATEST` (atomically) is how a running
service is made to switch heads without a redeploy."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LATEST = "LATEST"
_NAME = re.compile(r"^head-(\d{4,})\.json$")


@dataclass(frozen=True)
class Head:
    version: int
    labels: tuple[str, ...]
    layers: tuple[int, ...]  # hidden-state indices whose mean and max pooling are the features
    mean: np.ndarray  # (dims,) standardisation
    scale: np.ndarray  # (dims,)
    weights: np.ndarray  # (labels, dims)
    bias: np.ndarray  # (labels,)
    meta: dict[str, Any]
    choice: dict[str, Any] | None = None  # the model-choice heads (intent_router/choice_head.py), if trained
    fast: dict[str, Any] | None = None  # the fast tier (intent_router/ngram_head.py), if trained

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = ((features - self.mean) / self.scale) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    @classmethod
    def read(cls, path: Path) -> "Head":
        data = json.loads(path.read_text())

        def array(key):
            return np.asarray(data[key], dtype=np.float32)

        return cls(int(data["version"]), tuple(data["labels"]), tuple(data["layers"]), array("mean"),
                   array("scale"), array("weights"), array("bias"), data.get("meta", {}), data.get("choice"),
                   data.get("fast"))


def latest_path(folder: Path) -> Path | None:
    pointer = folder / LATEST
    if not pointer.exists():
        return None
    return folder / pointer.read_text().strip()


def pointer_stamp(folder: Path) -> float | None:
    """Cheap change detector: the mtime of LATEST (None if there is none)."""
    try:
        return (folder / LATEST).stat().st_mtime_ns
    except FileNotFoundError:
        return None


def next_version(folder: Path) -> int:
    versions = [int(m.group(1)) for p in folder.glob("head-*.json") if (m := _NAME.match(p.name))]
    return max(versions, default=0) + 1


def write_head(folder: Path, labels: list[str], layers: list[int], mean: np.ndarray, scale: np.ndarray,
               weights: np.ndarray, bias: np.ndarray, meta: dict[str, Any],
               choice: dict[str, Any] | None = None, fast: dict[str, Any] | None = None) -> Path:
    """Write head-NNNN.json (with the model-choice heads' and the fast tier's sections when given), then
    point LATEST at it (each with an atomic rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    version = next_version(folder)
    path = folder / f"head-{version:04d}.json"

    def rounded(a):  # 7 significant digits: the precision of float32, in fewer characters
        return [[float(f"{x:.7g}") for x in row] for row in a] if np.ndim(a) == 2 else \
            [float(f"{x:.7g}") for x in a]

    body = {"version": version, "labels": labels, "layers": layers,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mean": rounded(mean),
            "scale": rounded(scale), "weights": rounded(weights), "bias": rounded(bias), "meta": meta}
    if choice is not None:
        body["choice"] = choice
    if fast is not None:
        body["fast"] = fast
    _atomic_write(path, json.dumps(body))
    _atomic_write(folder / LATEST, path.name + "\n")
    return path


def versions(folder: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in folder.glob("head-*.json") if (m := _NAME.match(p.name)))


def rollback(folder: Path) -> tuple[str, str]:
    """Point LATEST at the newest version older than the current one; (from, to) file names. Raises
    LookupError when there is no current version or none before it."""
    current = latest_path(folder)
    match = _NAME.match(current.name) if current is not None else None
    if match is None:
        raise LookupError(f"no published head in {folder}")
    older = [v for v in versions(folder) if v < int(match.group(1))]
    if not older:
        raise LookupError(f"{current.name} is the oldest head in {folder}: nothing to go back to")
    target = f"head-{older[-1]:04d}.json"
    _atomic_write(folder / LATEST, target + "\n")
    return current.name, target


def seed(folder: Path, source: Path) -> bool:
    """Copy the versions and LATEST of `source` into `folder` when `folder` has no LATEST and `source`
    has one: a new head folder starts from the shipped head, so training is compared with it, numbers on
    from it, and a rollback can go back to it. False when nothing was copied."""
    if (folder / LATEST).exists() or latest_path(source) is None or folder.resolve() == source.resolve():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("head-*.json")):
        if _NAME.match(path.name) and not (folder / path.name).exists():
            _atomic_write(folder / path.name, path.read_text())
    _atomic_write(folder / LATEST, (source / LATEST).read_text())  # last: the folder is whole before it counts
    return True


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
