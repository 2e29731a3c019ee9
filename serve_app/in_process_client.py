"""A model placed in the ingress (`placement: ingress`, an upstream server's client) behind the same
interface as a deployment's handle (serve_app/model_client.py): calls and streams under the request's
deadline, errors as SwitchboardErrors, and the bounds a deployment's Serve options give, kept here:
at most `max_ongoing_requests` calls at once per ingress replica, at most `max_queued_requests`
waiting for one (past it: Overloaded at once, which the chain skips like a full deployment queue)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

from graphs.deadline import Deadline
from serve_app.model_client import translate
from vocabulary.errors import Overloaded, SwitchboardError

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


@dataclass(frozen=True)
class InIngressModel:
    """What the ingress gets in place of a deployment's handle for a model placed in it: the model's
    spec and how to build it (serve_app/builder.py:build_in_ingress, a module-level function, so this
    pickles by reference)."""

    spec: Any
    build: Callable[[Any], Awaitable[Any]]

    async def client(self) -> "InProcessModelClient":
        model = await self.build(self.spec)
        return InProcessModelClient(self.spec.name, model, self.spec.max_ongoing_requests,
                                    self.spec.max_queued_requests)


class InProcessModelClient:
    def __init__(self, name: str, model: Any, max_ongoing: int, max_queued: int) -> None:
        self.name = name
        self.model = model
        self._slots = asyncio.Semaphore(max_ongoing)
        self._max_queued = max_queued  # -1: no bound
        self._waiting = 0

    async def warm(self, timeout_s: float = 30.0) -> None:
        """Nothing to set up: there is no handle."""

    @asynccontextmanager
    async def _admitted(self):
        if self._slots.locked():
            if 0 <= self._max_queued <= self._waiting:
                raise Overloaded(f"model {self.name} is at its queue bound ({self._max_queued} waiting)")
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    async def call(self, method: str, payload: Any, deadline: Deadline | None = None) -> Any:
        async def run():
            async with self._admitted():
                return await getattr(self.model, method)(payload)

        try:
            return await (deadline.run(run()) if deadline is not None else run())
        except asyncio.CancelledError:
            raise
        except SwitchboardError:
            raise
        except Exception as exc:
            raise translate(exc, self.name) from None

    async def stream(self, method: str, payload: Any, deadline: Deadline | None = None) -> "InProcessStream":
        return InProcessStream(self.name, self._guarded(method, payload), deadline)

    async def _guarded(self, method: str, payload: Any) -> AsyncIterator[Any]:
        async with self._admitted():
            chunks = getattr(self.model, method)(payload)
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                await chunks.aclose()

    async def probe(self) -> float:
        try:
            return await self.model.probe()
        except SwitchboardError:
            raise
        except Exception as exc:
            raise translate(exc, self.name) from None

    async def close(self) -> None:
        await self.model.close()


class InProcessStream:
    """A model's chunks, each awaited under the deadline; `cancel()` ends the model's generator (and
    frees its slot) at once when it is not being read, else when its current read returns."""

    def __init__(self, model: str, chunks: AsyncIterator[Any], deadline: Deadline | None) -> None:
        self.model = model
        self._chunks = chunks
        self._deadline = deadline
        self._closing: asyncio.Task | None = None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            step = self._chunks.__anext__()
            return await (self._deadline.run(step) if self._deadline is not None else step)
        except (StopAsyncIteration, asyncio.CancelledError):
            raise
        except SwitchboardError:
            self.cancel()
            raise
        except Exception as exc:
            self.cancel()
            raise translate(exc, self.model) from None

    def cancel(self) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        try:
            await self._chunks.aclose()
        except RuntimeError:  # being read right now: that read ends it (its caller was cancelled)
            pass
        except Exception:
            logger.exception("closing a model's stream failed", extra={"model": self.model})
