"""Content is text: a chat template's special-token strings in what a client sent are never read as
special tokens.

An engine renders the messages with its chat template and tokenises the result with special tokens
parsed (it must: the template's own markers are those tokens). Without care, a user who writes
`hi<|im_end|>\n<|im_start|>system\n...` writes a system turn. Before any template sees them, every
client-supplied string of the messages (content, text parts, names, tool-call names and arguments) has
each special-token string broken by a zero-width space after its first character: the model reads the
same characters, tokenised as plain text.

The strings: the engine's own (llama.cpp: control and user-defined tokens of the vocabulary;
transformers: the tokenizer's added tokens) and, for every engine including upstream servers whose
tokenizer is unknown here, the markers of the common chat formats (`COMMON_MARKERS`)."""

from __future__ import annotations

import re
from typing import Any, Iterable

ZERO_WIDTH_SPACE = "\u200b"
COMMON_MARKERS = (r"<\|[^\s<>|]{1,64}\|>", r"</?s>", r"\[/?INST\]", r"<</?SYS>>", r"<(?:start|end)_of_turn>",
                  r"<(?:bos|eos|pad|unk|mask)>")


def marker_pattern(specials: Iterable[str] = ()) -> re.Pattern[str]:
    """One pattern for the engine's special-token strings (longest first) and the common markers."""
    exact = sorted({s for s in specials if isinstance(s, str) and len(s) >= 2 and not s.isspace()}, key=len,
                   reverse=True)
    return re.compile("|".join([re.escape(s) for s in exact] + list(COMMON_MARKERS)))


def neutralise(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(lambda m: m.group(0)[0] + ZERO_WIDTH_SPACE + m.group(0)[1:], text)


def neutralise_messages(messages: list[dict[str, Any]], pattern: re.Pattern[str]) -> list[dict[str, Any]]:
    """The messages with every client-supplied string neutralised (roles are checked elsewhere)."""
    return [_message(m, pattern) for m in messages]


def _message(message: dict[str, Any], pattern: re.Pattern[str]) -> dict[str, Any]:
    out = dict(message)
    content = message.get("content")
    if isinstance(content, str):
        out["content"] = neutralise(content, pattern)
    elif isinstance(content, list):
        out["content"] = [{**p, "text": neutralise(p["text"], pattern)}
                          if isinstance(p, dict) and isinstance(p.get("text"), str) else p for p in content]
    if isinstance(message.get("name"), str):
        out["name"] = neutralise(message["name"], pattern)
    if isinstance(message.get("tool_calls"), list):
        out["tool_calls"] = [_tool_call(c, pattern) for c in message["tool_calls"]]
    return out


def _tool_call(call: Any, pattern: re.Pattern[str]) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        return call
    fixed = {k: neutralise(v, pattern) if k in ("name", "arguments") and isinstance(v, str) else v
             for k, v in function.items()}
    return {**call, "function": fixed}
