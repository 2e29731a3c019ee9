"""One request's log record: filled while the request runs (the middleware opens it, the
services add what they learn), turned into one JSON line when the request ends, whatever the end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

MAX_ERROR_CHARS = 300


@dataclass
class RequestRecord:
    request_id: str
    endpoint: str
    method: str
    replica: str
    ts: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
    started: float = field(default_factory=time.perf_counter)
    status: int | None = None
    error_code: str | None = None
    stream: bool = False
    client_gone: bool = False
    client: dict[str, str] | None = None  # the client key's name and hash prefix, when keys are on
    ctx: Any = None  # the RequestContext, once the handler made one
    text: str | None = None  # the user's text, redacted into the excerpt
    redaction: Any = None  # a concurrent Future of (redacted text, counts), started when the text is known

    def line(self, total_ms: float) -> dict[str, Any]:
        """Everything but the excerpt and the personal-data counts (added after redaction)."""
        ctx = self.ctx
        calls = list(getattr(ctx, "calls", ()) or ())
        answered = ctx.models[-1] if ctx is not None and ctx.models else None
        failed = list(dict.fromkeys(f.model for f in ctx.failures)) if ctx is not None else []
        status = self.status if self.status is not None else (499 if self.client_gone else 500)
        deadline = getattr(ctx, "deadline", None)
        return {
            "request_id": self.request_id, "ts": self.ts, "endpoint": self.endpoint, "method": self.method,
            "status": status, "error_code": self.error_code or getattr(ctx, "error_code", None),
            "intent": getattr(ctx, "intent", None), "route": getattr(ctx, "route", None),
            "calls": calls, "model": answered, "models": list(ctx.models) if ctx is not None else [],
            "degraded": bool(ctx is not None and ctx.degraded), "failed": failed,
            "failovers": sum(1 for c in calls if c["status"] == "error"),
            "deadline_ms": round(deadline.total_s * 1000) if deadline is not None else None,
            "total_ms": round(total_ms, 2), "agreement": getattr(ctx, "agreement", None),
            "stt_confidence": getattr(ctx, "stt_confidence", None), "untrusted": bool(getattr(ctx, "untrusted", False)),
            "input_chars": len(self.text) if self.text else 0,
            "attachments": attachments_of(ctx), "choice": list(getattr(ctx, "choices", ()) or ()) or None,
            "committee": getattr(ctx, "committee", None),
            "stream": self.stream, "client_gone": self.client_gone, "replica": self.replica,
            "client": self.client, "variant": getattr(ctx, "variant", None),
        }


def attachments_of(ctx: Any) -> dict[str, Any]:
    """How many images and audio parts the request had, and what was measured of the first of each."""
    out = dict(getattr(ctx, "attachments", None) or {"images": 0, "audio": 0})
    out.setdefault("image", None)
    out.setdefault("audio_seconds", None)
    facts = getattr(ctx, "facts", None)
    if facts is None:
        return out
    if "image" in facts.attachments:
        out["images"] = out.get("images") or 1
        if facts.image_width is not None:
            out["image"] = {"width": facts.image_width, "height": facts.image_height,
                            "rotation": facts.image_rotation, "contrast": facts.image_contrast}
    if "audio" in facts.attachments:
        out["audio"] = out.get("audio") or 1
        out["audio_seconds"] = facts.audio_seconds
    return out


def short_error(exc: BaseException | None) -> str | None:
    """A failure's class and message, cut: enough to group by, never a traceback."""
    if exc is None:
        return None
    message = getattr(exc, "message", None) or str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:MAX_ERROR_CHARS]
