"""Failure exemplars (`switchboard exemplars`, and the exemplars a failure campaign caused): the request
log and its feedback turned into `{"request_id", "context", "mistake", "fix"}` rows.

- `context`: what was asked: {excerpt, endpoint, intent, attachments}.
- `mistake`: {"kind", "model", "detail"} plus the kind's numbers. Kinds:
  timeout (a call the deadline ran out on, or a 504 with no failed call), failover (a call that failed
  before a later call answered), server_error (a call that failed on a request that ended 5xx with no
  answer, or a 5xx with no failed call), low_stt_confidence (`untrusted`, or stt_confidence under the
  threshold), ocr_disagreement (the vision committee's agreement under the threshold), feedback
  (thumbs-down, or a correction).
- `fix`: {"model", "intent", "action"}: what answered, or what a person said should have.
A call failed by the client's fault, or skipped by an open breaker, is no mistake of a model.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from intent_router.learning_data import latest_feedback

STT_MIN_CONFIDENCE = 0.7
AGREEMENT_THRESHOLD = 0.8


def context(line: Mapping[str, Any]) -> dict[str, Any]:
    return {"excerpt": line.get("excerpt"), "endpoint": line.get("endpoint"), "intent": line.get("intent"),
            "attachments": line.get("attachments")}


def _row(line, kind: str, model: str | None, detail: str | None, fix_model: str | None = None,
         fix_intent: str | None = None, action: str | None = None, **numbers) -> dict[str, Any]:
    return {"request_id": line.get("request_id"), "context": context(line),
            "mistake": {"kind": kind, "model": model, "detail": detail, **numbers},
            "fix": {"model": fix_model, "intent": fix_intent, "action": action}}


def _call_rows(line: Mapping[str, Any]) -> list[dict[str, Any]]:
    calls = [c for c in line.get("calls") or () if isinstance(c, Mapping)]
    status = line.get("status") or 0
    out = []
    for i, call in enumerate(calls):
        if call.get("status") != "error" or call.get("blame") == "client":
            continue
        later = next((c.get("model") for c in calls[i + 1:] if c.get("status") == "ok"), None)
        if call.get("blame") == "deadline":
            kind = "timeout"
        elif later is not None:
            kind = "failover"
        elif status >= 500:
            kind = "server_error"
        else:
            continue  # failed, no later answer, no 5xx: the LLM-only path or a degraded answer covered it
        action = f"answered by {later}" if later else None
        out.append(_row(line, kind, call.get("model"), call.get("error"), later, action=action,
                        latency_ms=call.get("latency_ms"), status=status))
    if not out and status >= 500:
        kind = "timeout" if status == 504 else "server_error"
        out.append(_row(line, kind, None, line.get("error_code"), status=status))
    return out


def _answering(line: Mapping[str, Any]) -> str | None:
    return next((c.get("model") for c in line.get("calls") or () if c.get("status") == "ok"), line.get("model"))


def from_log(lines: Iterable[Mapping[str, Any]], feedback: Iterable[Mapping[str, Any]],
             request_ids: Iterable[str] | None = None, *, stt_min_confidence: float = STT_MIN_CONFIDENCE,
             agreement_threshold: float = AGREEMENT_THRESHOLD) -> list[dict[str, Any]]:
    """Every exemplar the lines (only those of `request_ids`, when given) and their feedback hold, in
    log order."""
    wanted = set(request_ids) if request_ids is not None else None
    ratings = latest_feedback(feedback)
    out: list[dict[str, Any]] = []
    for line in lines:
        request_id = line.get("request_id")
        if wanted is not None and request_id not in wanted:
            continue
        out += _call_rows(line)
        confidence = line.get("stt_confidence")
        if line.get("untrusted") or (isinstance(confidence, (int, float)) and confidence < stt_min_confidence):
            out.append(_row(line, "low_stt_confidence", _answering(line), "the transcript is not trusted",
                            action="ask a second speech-to-text model, or the user to confirm",
                            stt_confidence=confidence))
        agreement = line.get("agreement")
        if isinstance(agreement, (int, float)) and agreement < agreement_threshold:
            out.append(_row(line, "ocr_disagreement", line.get("model"), "the vision models read the image "
                            "differently", action="trust neither reading alone; ask for a clearer image",
                            agreement=agreement))
        item = ratings.get(request_id)
        correction = (item or {}).get("correction") or {}
        if item is not None and (item.get("rating") == "down" or correction):
            out.append(_row(line, "feedback", line.get("model"), item.get("comment"), correction.get("model"),
                            correction.get("intent"), action="a person's correction" if correction else None,
                            used_intent=line.get("intent"), rating=item.get("rating")))
    return out
