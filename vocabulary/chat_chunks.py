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
    """The `chat.completion` a non-streaming client gets, from a stream's chunks. Per choice: the
    content joined, tool-call deltas merged by index (id, type, name, arguments joined; content None
    when only tool calls came), logprobs' content lists joined, the last finish_reason."""
    def fresh() -> dict[str, Any]:
        return {"content": [], "calls": {}, "logprobs": None, "finish": None}

    merged: dict[int, dict[str, Any]] = {}
    usage = None
    first = chunks[0] if chunks else {}
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            into = merged.setdefault(choice.get("index") or 0, fresh())
            delta = choice.get("delta") or {}
            if delta.get("content"):
                into["content"].append(delta["content"])
            for call in delta.get("tool_calls") or ():
                acc = into["calls"].setdefault(call.get("index") or 0, {"id": None, "type": "function",
                                                                         "name": [], "arguments": []})
                acc["id"] = acc["id"] or call.get("id")
                acc["type"] = call.get("type") or acc["type"]
                fn = call.get("function") or {}
                acc["name"].append(fn.get("name") or "")
                acc["arguments"].append(fn.get("arguments") or "")
            logprobs = choice.get("logprobs") or {}
            if logprobs.get("content") is not None:
                into["logprobs"] = into["logprobs"] or {"content": []}
                into["logprobs"]["content"].extend(logprobs["content"])
            into["finish"] = choice.get("finish_reason") or into["finish"]
    choices = []
    for index, into in sorted((merged or {0: fresh()}).items()):
        message: dict[str, Any] = {"role": "assistant", "content": "".join(into["content"])}
        if into["calls"]:
            message["content"] = message["content"] or None
            message["tool_calls"] = [{"id": c["id"], "type": c["type"],
                                      "function": {"name": "".join(c["name"]), "arguments": "".join(c["arguments"])}}
                                     for _, c in sorted(into["calls"].items())]
        choice = {"index": index, "message": message, "finish_reason": into["finish"] or "stop"}
        if into["logprobs"] is not None:
            choice["logprobs"] = into["logprobs"]
        choices.append(choice)
    completion = {"id": first.get("id") or "chatcmpl-switchboard", "object": "chat.completion",
                  "created": first.get("created") or int(time.time()), "model": model, "choices": choices}
    if usage:
        completion["usage"] = usage
    return completion


def merge_choices(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """n whole answers to the same prompt as one completion with n choices: choice i is answer i's,
    and usage counts the prompt once and every choice's completion."""
    merged = dict(answers[0])
    if len(answers) == 1:
        return merged
    merged["choices"] = [{**answer["choices"][0], "index": i} for i, answer in enumerate(answers)]
    usages = [a.get("usage") for a in answers]
    if all(usages):
        prompt = usages[0].get("prompt_tokens", 0)
        completion = sum(u.get("completion_tokens", 0) for u in usages)
        merged["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
        if any(u.get("estimated") for u in usages):
            merged["usage"]["estimated"] = True
    else:
        merged.pop("usage", None)  # some choice has no count: no total is better than a wrong one
    models = list(dict.fromkeys(a.get("model") for a in answers))
    merged["model"] = models[0] if len(models) == 1 else ",".join(models)
    return merged
