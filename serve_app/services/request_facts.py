"""What a chat body tells about its request before any model runs, as RequestFacts fields
(graphs/faults.py): the user's last message (the text the router reads), the size of all the
messages' text, and the kinds of attachment. The measured media come later (the image check, the
audio decode); the intent after routing."""

from __future__ import annotations

from typing import Any

from serve_app.schemas.chat import AudioPart, ChatCompletionRequest, ImagePart


def chat_facts(body: ChatCompletionRequest) -> dict[str, Any]:
    """Keyword arguments for RequestContext.learn."""
    users = [m for m in body.messages if m.role == "user"]
    parts = [p for m in body.messages for p in m.attachments()]
    kinds = {"image" for p in parts if isinstance(p, ImagePart)} | {"audio" for p in parts if isinstance(p, AudioPart)}
    return {"text": users[-1].text() if users else "", "input_chars": sum(len(m.text()) for m in body.messages),
            "attachments": frozenset(kinds)}
