"""Request-log lines and feedback lines, in the format serve_app/request_log/ writes, for tests of the
learning loop that need no running service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def call(model: str, status: str = "ok", *, blame: str | None = None, error: str | None = None, attempt: int = 1,
         latency_ms: float = 20.0) -> dict[str, Any]:
    if status == "error" and blame is None:
        blame = "model"
    return {"model": model, "attempt": attempt, "latency_ms": latency_ms, "status": status, "error": error,
            "blame": blame, "breaker_state": "open" if status == "skipped" else "closed", "tokens_in": None,
            "tokens_out": None, "output_length": None}


def line(request_id: str, text: str | None, calls: list[dict[str, Any]], *, intent: str = "text", status: int = 200,
         confidence: float = 0.9, classifier: str = "minilm-logreg", endpoint: str = "/v1/chat/completions",
         attachments: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    answered = [c["model"] for c in calls if c["status"] == "ok"]
    failed = [c["model"] for c in calls if c["status"] == "error"]
    body = {"request_id": request_id, "ts": "2025-11-26T12:00:00.000+00:00", "endpoint": endpoint, "method": "POST",
            "status": status, "error_code": None, "intent": intent,
            "route": {"decision": intent, "confidence": confidence, "classifier": classifier, "head_version": 1},
            "calls": calls, "model": answered[-1] if answered else None, "models": answered, "degraded": bool(failed),
            "failed": failed, "failovers": len(failed), "deadline_ms": 30000, "total_ms": 50.0, "agreement": None,
            "stt_confidence": None, "untrusted": False, "excerpt": text, "pii": {},
            "input_chars": len(text or ""), "attachments": attachments or {"images": 0, "audio": 0, "image": None,
                                                                           "audio_seconds": None},
            "stream": False, "client_gone": False, "replica": "r1"}
    body.update(extra)
    return body


def feedback(request_id: str, rating: str = "down", **correction: str) -> dict[str, Any]:
    return {"ts": "2025-11-26T12:01:00.000+00:00", "request_id": request_id, "rating": rating,
            "correction": correction or None}


def write_log(folder: Path, lines: list[dict], feedback_lines: list[dict] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requests-r1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / "feedback.jsonl").write_text("".join(json.dumps(x) + "\n" for x in feedback_lines))
    return folder
