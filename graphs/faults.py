"""Fault injection, the seed's "intentionally break your pipeline": per model, added latency, a
hang, an error rate, corrupted output, or a stream that dies after some chunks. Set in config and
at run time (PUT /api/admin/faults/{model}); applied around the calls the ingress makes, so every
failure path (breakers, chains, deadlines, validators) can be exercised on purpose."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, TypeVar

T = TypeVar("T")
Corruption = Literal["empty", "garbled"]


class InjectedFault(Exception):
    def __init__(self, model: str, what: str = "error") -> None:
        super().__init__(f"injected fault ({what})")
        self.model = model
        self.message = str(self)


@dataclass(frozen=True)
class Fault:
    error_rate: float = 0.0
    latency_ms: int = 0
    hang: bool = False
    corrupt: Corruption | None = None
    stream_break_after: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.latency_ms or self.hang or self.corrupt or
                    self.stream_break_after is not None)


class FaultBook:
    """The faults in force, by model name."""

    def __init__(self, initial: dict[str, Fault] | None = None, *, rng: random.Random | None = None) -> None:
        self._faults = dict(initial or {})
        self._rng = rng or random.Random()

    def set(self, model: str, fault: Fault) -> None:
        self._faults[model] = fault

    def clear(self, model: str) -> None:
        self._faults.pop(model, None)

    def get(self, model: str) -> Fault | None:
        fault = self._faults.get(model)
        return fault if fault is not None and fault.active else None

    def all(self) -> dict[str, Fault]:
        return {k: v for k, v in self._faults.items() if v.active}

    async def before(self, model: str) -> None:
        """Latency, hang and errors, before the call is made."""
        fault = self.get(model)
        if fault is None:
            return
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.hang:
            await asyncio.Event().wait()  # until the request's deadline cancels it
        if fault.error_rate and self._rng.random() < fault.error_rate:
            raise InjectedFault(model)

    async def around(self, model: str, call: Callable[[], Awaitable[T]], corrupt: Callable[[Any, str], Any]) -> T:
        await self.before(model)
        result = await call()
        fault = self.get(model)
        return corrupt(result, fault.corrupt) if fault is not None and fault.corrupt else result

    def stream(self, model: str, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        fault = self.get(model)
        if fault is None or fault.stream_break_after is None:
            return chunks
        return _breaking(model, chunks, fault.stream_break_after)


async def _breaking(model: str, chunks: AsyncIterator[Any], after: int) -> AsyncIterator[Any]:
    n = 0
    async for chunk in chunks:
        if n >= after:
            raise InjectedFault(model, f"stream broke after {after} chunks")
        n += 1
        yield chunk
