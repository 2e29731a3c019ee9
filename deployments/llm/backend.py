"""The interface every LLM backend implements, in OpenAI's chat-completion shapes, and the engine's
own counters (what the engine did, not what the deployment thinks it asked for)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol

from vocabulary.calls import ChatCall

ANSWERING_S = 10.0  # an engine that began an answer or produced a token this recently is alive: no probe needed


@dataclass
class EngineCounters:
    """Counted where tokens are produced (the engine's thread). `tokens_after_cancel` is how many
    tokens were generated after their request was cancelled (client gone, deadline, committee
    cancel): a handful at most, or generation is not stopping."""

    active: int = 0
    tokens: int = 0
    tokens_after_cancel: int = 0
    cancelled: int = 0
    last_progress: float = float("-inf")  # monotonic time a generation began or last produced a token
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def began(self) -> None:
        with self._lock:
            self.active += 1
            self.last_progress = time.monotonic()

    def ended(self) -> None:
        with self._lock:
            self.active -= 1

    def produced(self, n: int, cancel: threading.Event) -> None:
        with self._lock:
            self.tokens += n
            self.last_progress = time.monotonic()
            if cancel.is_set():
                self.tokens_after_cancel += n

    def answering(self, within_s: float) -> bool:
        """A generation is running and began or produced a token within the last `within_s` seconds."""
        return self.active > 0 and time.monotonic() - self.last_progress < within_s

    def as_dict(self) -> dict[str, int]:
        return {"engine_active": self.active, "tokens_generated": self.tokens,
                "tokens_after_cancel": self.tokens_after_cancel, "cancelled_generations": self.cancelled}


class LLMBackend(Protocol):
    """An engine that streams chat completions.

    `chat_stream` yields `chat.completion.chunk` dicts, the last with a finish_reason (and usage
    where the engine knows it); closing or cancelling the stream stops generation within a token
    or so. Errors are SwitchboardErrors.
    """

    counters: EngineCounters

    async def start(self) -> None: ...

    def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]: ...

    async def check(self) -> None:
        """Cheap liveness of the engine; raises if it cannot answer."""

    def special_texts(self) -> list[str]:
        """The strings its tokenizer reads as special tokens (empty when unknown: an upstream server);
        vocabulary/special_tokens.py keeps them out of client text."""

    async def close(self) -> None: ...
