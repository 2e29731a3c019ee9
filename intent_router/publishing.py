"""`switchboard train-router`: train the intent head (data/router/train.jsonl + the log's intent
corrections) and the model-choice heads (the log's calls and feedback), compare them with the
published version on the fixed held-out split, and publish a new version only when it is not worse.

Worse means: intent accuracy on heldout.jsonl + the held-out corrections lower than the current
head's (beyond `intent_tolerance`), or a family's choice log-loss higher than the current version's
on the held-out rows both cover (beyond `choice_tolerance`; a model's rows from before its latest
breaker episode are not compared, see choice_training.compare). `force` publishes anyway. A family with
no new rows keeps its current choice head (carried into the new version)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from intent_router.choice_head import ChoiceHeads
from intent_router.choice_training import DEFAULT_CHOICE_C, compare, embed_rows, fit_choice_heads
from intent_router.fast_training import FeatureCache, cascade_accuracy, fit_fast_tier
from intent_router.head import Head, latest_path
from intent_router.ngram_head import NgramHead
from intent_router.learning_data import change_points, choice_rows, intent_rows, split
from intent_router.training import DEFAULT_C, DEFAULT_LAYERS, fit_head, publish_head, read_rows
from vocabulary.router_config import RouterSpec

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
CHOICE_TOLERANCE = 0.01  # log-loss (nats) a family's choice head may lose to noise before it counts as worse


@dataclass
class TrainOutcome:
    published: bool
    artifact: str | None
    refused: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"published": self.published, "artifact": self.artifact, "refused": self.refused, **self.report}


def train_router(data_dir: Path, artifact_dir: Path, router: RouterSpec, lines: Iterable[Mapping[str, Any]],
                 feedback: Iterable[Mapping[str, Any]], families: Mapping[str, str], *, c: float = DEFAULT_C,
                 choice_c: float = DEFAULT_CHOICE_C, force: bool = False, intent_tolerance: float = 0.0,
                 choice_tolerance: float = CHOICE_TOLERANCE, classifier=None) -> TrainOutcome:
    """`families`: model name -> family (the roster's). `classifier`: an EmbeddingClassifier with its
    encoder loaded (one is loaded from `router.classifier` when not given)."""
    if classifier is None:
        from intent_router.classifier import EmbeddingClassifier

        classifier = EmbeddingClassifier(router.classifier)
        classifier.load_encoder()
    lines, feedback = list(lines), list(feedback)
    current_path = latest_path(artifact_dir)
    current = Head.read(current_path) if current_path is not None and current_path.exists() else None

    corrections_train, corrections_heldout = split(intent_rows(lines, feedback))
    train = read_rows(data_dir / "train.jsonl") + [r.as_training_row() for r in corrections_train]
    heldout_path = data_dir / "heldout.jsonl"
    heldout = (read_rows(heldout_path) if heldout_path.exists() else []) + \
        [r.as_training_row() for r in corrections_heldout]
    layers = DEFAULT_LAYERS
    features = FeatureCache(classifier, [r["text"] for r in train + heldout], layers)
    head = fit_head(train, features, c=c, layers=layers)
    fast = fit_fast_tier(train, lambda rows, f: fit_head(rows, f, c=c, layers=layers), features)
    new_eval = cascade_accuracy(head, fast, heldout, features)
    current_fast = NgramHead.from_json(current.fast) if current is not None and current.fast is not None else None
    current_eval = cascade_accuracy(current, current_fast, heldout, classifier) if current is not None else None
    # What serves is the cascade: its accuracy decides (MiniLM alone's is reported beside it).
    intent = {"train_rows": len(train), "corrections_train": len(corrections_train),
              "corrections_heldout": len(corrections_heldout), "heldout_rows": len(heldout),
              "new_accuracy": new_eval["cascade"], "new_minilm_accuracy": new_eval["minilm"],
              "new_fast_share": new_eval["fast_share"], "fast_threshold": fast.threshold,
              "current_accuracy": current_eval["cascade"] if current_eval else None,
              "current_minilm_accuracy": current_eval["minilm"] if current_eval else None,
              "current_version": current.version if current is not None else None}

    rows_train, rows_heldout = split(choice_rows(lines, feedback, families))
    changes = {m: t for m, t in change_points(lines).items() if m in families}
    old_choice = ChoiceHeads.from_head(current, min_rows=router.choice.min_rows) if current is not None else None
    new_choice = None
    choice: dict[str, Any] = {"log_lines": len(lines), "feedback": len(feedback), "train_rows": len(rows_train),
                              "heldout_rows": len(rows_heldout), "families": {},
                              "changes": {m: datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
                                          for m, t in sorted(changes.items())}}
    if rows_train:
        rows_train = embed_rows(rows_train, classifier.sentence_embeddings)
        rows_heldout = embed_rows(rows_heldout, classifier.sentence_embeddings)
        new_choice = fit_choice_heads(rows_train, c=choice_c, changes=changes)
        new_choice.min_rows = router.choice.min_rows
        choice["families"] = compare(new_choice, old_choice, rows_train, rows_heldout, changes)
    merged = _carry(new_choice, old_choice, choice)

    refused = []
    if intent["current_accuracy"] is not None and intent["new_accuracy"] is not None and \
            intent["new_accuracy"] < intent["current_accuracy"] - intent_tolerance:
        refused.append(f"intent accuracy on the held-out split would drop from {intent['current_accuracy']:.4f} "
                       f"to {intent['new_accuracy']:.4f}")
    for family, entry in choice["families"].items():
        new, old = entry.get("new", {}).get("log_loss"), entry.get("old", {}).get("log_loss")
        if new is not None and old is not None and new > old + choice_tolerance:
            refused.append(f"the {family} choice head's held-out log-loss would rise from {old:.4f} to {new:.4f}")
    report = {"intent": intent, "choice": choice}
    if refused and not force:
        logger.warning("router head not published", extra={"reasons": refused})
        return TrainOutcome(False, None, refused, report)
    meta = {**head.meta, "heldout_rows": len(heldout), "heldout_accuracy": intent["new_accuracy"],
            "heldout_minilm_accuracy": intent["new_minilm_accuracy"], "heldout_fast_share": intent["new_fast_share"],
            "train_sha1": hashlib.sha1((data_dir / "train.jsonl").read_bytes()).hexdigest(),
            "corrections": len(corrections_train), "choice_rows": len(rows_train), "forced": bool(refused)}
    fast = replace(fast, meta={**fast.meta, "heldout_cascade_accuracy": new_eval["cascade"],
                               "heldout_fast_share": new_eval["fast_share"]})
    path = publish_head(artifact_dir, head, meta, merged.to_json() if merged is not None else None, fast.to_json())
    logger.info("router head published", extra={"artifact": str(path), "forced": bool(refused)})
    return TrainOutcome(True, str(path), refused, report)


def _carry(new: ChoiceHeads | None, old: ChoiceHeads | None, choice: dict[str, Any]) -> ChoiceHeads | None:
    """The new choice heads, plus the current version's families that got no new rows."""
    if old is None:
        return new
    kept = {f: h for f, h in old.families.items() if new is None or f not in new.families}
    if kept:
        choice["carried_over"] = sorted(kept)
    if new is None:
        return ChoiceHeads(kept, dims=old.dims) if kept else None
    return ChoiceHeads({**kept, **new.families}, dims=new.dims)
