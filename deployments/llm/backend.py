"""The interface every LLM backend implements, in OpenAI's chat-completion shapes."""

from __future__ import annotations

from typing import Any, AsyncIterator, Protocol

from deployments.calls import ChatCall


class LLMBackend(Protocol):
    """An engine that answers chat completions.

    `chat` returns an OpenAI `chat.completion` dict; `chat_stream` yields
    `chat.completion.chunk` dicts. Errors are SwitchboardErrors.
    """

    async def start(self) -> None: ...

    async def chat(self, call: ChatCall) -> dict[str, Any]: ...

    def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]: ...

    async def check(self) -> None:
        """Cheap liveness of the engine; raises if it cannot answer."""

    async def close(self) -> None: ...
