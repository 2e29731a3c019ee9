"""What a chat stream's relay keeps across its choices (n > 1 streams one choice after another)."""

from __future__ import annotations

from typing import Any

KEPT_CHARS = 20_000


class StreamState:
    """What a chat stream's relay keeps across its choices: one id for every chunk, the usage."""

    def __init__(self, chunk_id: str, created: int) -> None:
        self.id, self.created, self.model = chunk_id, created, ""
        self.outcome = "ok"
        self._usage: dict[int, dict[str, Any]] = {}  # choice -> its last usage (as a whole answer keeps it)
        self.chars: dict[int, int] = {}  # choice -> characters of content relayed (for the request log)
        self._first: list[str] = []  # the first choice's content, up to KEPT_CHARS (for a shadow's comparison)

    def relabel(self, chunk: dict[str, Any], model: str, choice: int) -> bool:
        """Make `chunk` choice `choice`'s, keep its usage; False when nothing is left to send."""
        usage = chunk.pop("usage", None)
        if usage:
            self._usage[choice] = usage
        chunk["id"], chunk["created"], chunk["model"] = self.id, self.created, model
        for c in chunk.get("choices") or ():
            c["index"] = choice
            content = (c.get("delta") or {}).get("content")
            if content:
                if choice == 0 and self.chars.get(0, 0) < KEPT_CHARS:
                    self._first.append(content)
                self.chars[choice] = self.chars.get(choice, 0) + len(content)
        return bool(chunk.get("choices"))

    def first_text(self) -> str:
        return "".join(self._first)[:KEPT_CHARS]

    def choice_usage(self, choice: int) -> dict[str, Any]:
        return self._usage.get(choice) or {}

    def usage(self) -> dict[str, Any]:
        """The prompt once, every choice's completion (as merge_choices counts a whole answer)."""
        usages = list(self._usage.values())
        prompt = usages[0].get("prompt_tokens", 0) if usages else 0
        completion = sum(u.get("completion_tokens", 0) for u in usages)
        out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                               "total_tokens": prompt + completion}
        if any(u.get("estimated") for u in usages):
            out["estimated"] = True
        return out
