"""OpenAI chat-completion chunks: which ones show progress, and a whole completion assembled from a
stream. Internally every LLM call streams, so the ingress sees tokens arrive (slow is not hung)."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator


def shows_progress(chunk: dict[str, Any]) -> bool:
    """A chunk with something the model produced: text, a tool call, a finish, or usage. The first
    chunk of many servers carries only the role and comes before any work."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("finish_reason"):
            return True
    return bool(chunk.get("usage"))


async def until_progress(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Read chunks up to and including the first that shows progress (or the end of the stream)."""
    read = []
    async for chunk in chunks:
        read.append(chunk)
        if shows_progress(chunk):
            break
    return read



def assemble(chunks: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """The `chat.completion` a non-streaming client gets, from the chunks of one choice."""
    content: list[str] = []
    finish = None
    usage = None
    first = chunks[0] if chunks else {}
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                content.append(delta["content"])
            finish = choice.get("finish_reason") or finish
    completion = {"id": first.get("id") or "chatcmpl-switchboard", "object": "chat.completion",
                  "created": first.get("created") or int(time.time()), "model": model,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(content)},
                               "finish_reason": finish or "stop"}]}
    if usage:
        completion["usage"] = usage
    return completion
