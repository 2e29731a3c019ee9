"""Training rows from the request log and its feedback (the line format: serve_app/request_log/).

- Intent rows: a feedback `correction.intent` on a request with an excerpt -> (excerpt, corrected
  intent). Under the softmax head the +1 for the corrected intent is also the -1 for the one used.
- Choice rows, one per (request, model of the roster): 1 when the model answered (a call with status
  ok), 0 when it failed for a reason that is its own or the input's (blame model, deadline, none);
  a call skipped by an open breaker, or failed by the client's or the platform's fault, is no
  evidence. Feedback overrides the calls: thumbs-down on an answered request -> 0 for the answering
  model; `correction.model` -> 1 for the corrected model, 0 for the one that answered; thumbs-up ->
  1 for the answering model. Feedback rows weigh `FEEDBACK_WEIGHT`.
- The held-out split is fixed: a request is held out when sha1(request_id) % 5 == 0; held-out rows
  are only ever predicted, never fitted.
- Change points: a model's breaker opening says the model changed. `change_points` gives, per model,
  the start of its latest breaker episode (openings less than `CHANGE_GAP_S` apart are one episode);
  training reweighs the evidence from before it (intent_router/choice_training.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping

from intent_router.choice_head import ChoiceFeatures
from vocabulary.routes import INTENTS

FEEDBACK_WEIGHT = 3.0
HELDOUT_MODULUS = 5
EVIDENCE_BLAME = {None, "model", "deadline", "none"}  # an error blamed on these says the model did not answer
CHANGE_GAP_S = 3600.0  # breaker openings closer than this belong to one episode
OPEN_STATES = ("open", "half_open")


def held_out(request_id: str) -> bool:
    return int(hashlib.sha1(request_id.encode()).hexdigest(), 16) % HELDOUT_MODULUS == 0


@dataclass(frozen=True)
class IntentRow:
    request_id: str
    text: str
    label: str
    used: str | None  # the intent the service chose

    @property
    def held_out(self) -> bool:
        return held_out(self.request_id)

    def as_training_row(self) -> dict[str, Any]:
        """The shape of data/router/*.jsonl rows."""
        return {"text": self.text, "attachment": None, "label": self.label, "request_id": self.request_id}


@dataclass(frozen=True)
class ChoiceRow:
    request_id: str
    family: str
    model: str
    label: int  # 1: answered well, 0: did not
    weight: float
    text: str | None  # the excerpt, embedded at training time
    features: ChoiceFeatures  # without the embedding
    source: str  # "call" | "feedback"
    ts: float | None = None  # the line's time (epoch seconds)

    @property
    def held_out(self) -> bool:
        return held_out(self.request_id)


def latest_feedback(feedback: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """request_id -> its last feedback line (a later rating replaces an earlier one)."""
    out: dict[str, Mapping[str, Any]] = {}
    for item in feedback:
        if isinstance(item.get("request_id"), str):
            out[item["request_id"]] = item
    return out


def by_request(lines: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {line["request_id"]: line for line in lines if isinstance(line.get("request_id"), str)}


def intent_rows(lines: Iterable[Mapping[str, Any]], feedback: Iterable[Mapping[str, Any]]) -> list[IntentRow]:
    requests = by_request(lines)
    rows = []
    for request_id, item in latest_feedback(feedback).items():
        correction = item.get("correction") or {}
        line = requests.get(request_id)
        label = correction.get("intent")
        if line is None or label not in INTENTS or not (line.get("excerpt") or "").strip():
            continue
        rows.append(IntentRow(request_id, line["excerpt"], label, line.get("intent")))
    return rows


def call_outcomes(line: Mapping[str, Any]) -> dict[str, int]:
    """model -> 1 if any of its calls answered, else 0 if a call of it failed as evidence; others absent."""
    out: dict[str, int] = {}
    for call in line.get("calls") or ():
        model, status = call.get("model"), call.get("status")
        if not isinstance(model, str):
            continue
        if status == "ok":
            out[model] = 1
        elif status == "error" and call.get("blame") in EVIDENCE_BLAME:
            out.setdefault(model, 0)
    return out


def choice_rows(lines: Iterable[Mapping[str, Any]], feedback: Iterable[Mapping[str, Any]],
                families: Mapping[str, str]) -> list[ChoiceRow]:
    """`families`: model name -> family, from the roster (a model not in it is dropped)."""
    ratings = latest_feedback(feedback)
    rows: list[ChoiceRow] = []
    for request_id, line in by_request(lines).items():
        outcomes = {m: (label, 1.0, "call") for m, label in call_outcomes(line).items()}
        item = ratings.get(request_id)
        answered = line.get("model")
        if item is not None:
            corrected = (item.get("correction") or {}).get("model")
            if isinstance(answered, str) and (item.get("rating") == "down" or corrected not in (None, answered)):
                outcomes[answered] = (0, FEEDBACK_WEIGHT, "feedback")
            elif isinstance(answered, str) and item.get("rating") == "up":
                outcomes[answered] = (1, FEEDBACK_WEIGHT, "feedback")
            if isinstance(corrected, str) and corrected != answered:
                outcomes[corrected] = (1, FEEDBACK_WEIGHT, "feedback")
        if not outcomes:
            continue
        features = ChoiceFeatures.from_line(line)
        text = (line.get("excerpt") or "").strip() or None
        ts = line_time(line)
        for model, (label, weight, source) in outcomes.items():
            if model in families:
                rows.append(ChoiceRow(request_id, families[model], model, label, weight, text, features, source, ts))
    return rows


def line_time(line: Mapping[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(line["ts"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def change_points(lines: Iterable[Mapping[str, Any]], gap_s: float = CHANGE_GAP_S) -> dict[str, float]:
    """model -> the time its latest breaker episode began: the first line in which its breaker was
    seen open or half-open (a skip or a probe) after `gap_s` or more without one. Models whose
    breaker was never seen open are absent."""
    seen: dict[str, list[float]] = {}
    for line in lines:
        ts = line_time(line)
        if ts is None:
            continue
        for call in line.get("calls") or ():
            if isinstance(call.get("model"), str) and call.get("breaker_state") in OPEN_STATES:
                seen.setdefault(call["model"], []).append(ts)
    out = {}
    for model, times in seen.items():
        times.sort()
        start = times[0]
        for before, after in zip(times, times[1:]):
            if after - before >= gap_s:
                start = after
        out[model] = start
    return out


def split(rows: list) -> tuple[list, list]:
    """(training rows, held-out rows) by the fixed hash of each row's request id."""
    return [r for r in rows if not r.held_out], [r for r in rows if r.held_out]
