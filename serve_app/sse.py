"""Server-sent events in OpenAI's streaming format, with an explicit error event."""

from __future__ import annotations

import json
from typing import Any

from vocabulary.errors import SwitchboardError, error_body

DONE = "data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def error_events(err: SwitchboardError, *, chunk_id: str, model: str, created: int) -> list[str]:
    """What a stream that broke after its first token ends with: an error event, then a final
    chunk whose finish_reason says "error" — never a truncated answer presented as complete."""
    final = {"id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}]}
    return [event(error_body(err)), event(final), DONE]
