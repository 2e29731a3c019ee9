"""Calls from the ingress to model deployments, each under the request's remaining deadline.

Errors come back as SwitchboardErrors: the deployment's own when it raised one, a ModelError
naming the model otherwise (replica death, actor errors), DeadlineExceeded on time-out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

from ray.serve.exceptions import BackPressureError

from graphs.deadline import Deadline, DeadlineExpired
from vocabulary.errors import (
    DeadlineExceeded,
    ModelError,
    Overloaded,
    PlatformError,
    SwitchboardError,
    as_switchboard_error,
)

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


# What a transport says when a message is over its cap: a platform limit, never the model's failure.
_TRANSPORT_LIMITS = ("RESOURCE_EXHAUSTED", "larger than max", "message larger", "max_send_message_length",
                     "max_receive_message_length")


def translate(exc: BaseException, model: str) -> SwitchboardError:
    if isinstance(exc, DeadlineExpired):
        return DeadlineExceeded(f"model {model} did not answer within the request's deadline")
    if isinstance(exc, BackPressureError):  # its queue is at max_queued_requests: shed, not failed
        return Overloaded(f"model {model} is at its queue bound: {exc}")
    found = as_switchboard_error(exc)
    if found is not None:
        return found
    text = f"{type(exc).__name__}: {exc}"
    if any(marker in text for marker in _TRANSPORT_LIMITS):
        logger.error("transport limit between the ingress and a model", exc_info=exc,
                     extra={"model": model, "error": text[:500]})
        return PlatformError(f"the call to model {model} hit a transport limit ({type(exc).__name__})")
    logger.error("model call failed", extra={"model": model, "error": text[:500]})
    return ModelError(f"model {model} failed ({type(exc).__name__})")


class ModelClient:
    """A model deployment's handle, called with deadlines."""

    def __init__(self, name: str, handle) -> None:
        self.name = name
        self._handle = handle
        self._stream_handle = handle.options(stream=True)

    async def warm(self, timeout_s: float = 30.0) -> None:
        """Make the first real call fast: one cheap call sets up the handle's router and its list of
        replicas, and the streaming handle made after it shares them (a streaming handle made before
        any call builds its own on first use, which cost a first chat well over a second)."""
        try:
            await self.call("stats", None, Deadline(timeout_s))
        except SwitchboardError as exc:
            logger.warning("could not warm the handle", extra={"model": self.name, "error": exc.message})
        self._stream_handle = self._handle.options(stream=True)

    async def call(self, method: str, payload: Any, deadline: Deadline | None = None) -> Any:
        """The answer; under `deadline` when given (else the caller bounds the wait)."""
        response = getattr(self._handle, method).remote(payload)
        try:
            return await (deadline.run(response) if deadline is not None else response)
        except asyncio.CancelledError:
            response.cancel()  # a cancelled caller cancels the replica's work too
            raise
        except Exception as exc:
            response.cancel()
            raise translate(exc, self.name) from None

    async def stream(self, method: str, payload: Any, deadline: Deadline | None = None) -> "ModelStream":
        """The chunks; each under `deadline` when given (else the caller bounds each wait)."""
        return ModelStream(self.name, getattr(self._stream_handle, method).remote(payload), deadline)

    async def probe(self) -> float:
        try:
            return await self._handle.probe.remote()
        except Exception as exc:
            raise translate(exc, self.name) from None


class ModelStream:
    """A streaming response whose every chunk is awaited under the deadline."""

    def __init__(self, model: str, generator, deadline: Deadline | None) -> None:
        self.model = model
        self._gen = generator
        self._deadline = deadline

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            step = self._gen.__anext__()
            return await (self._deadline.run(step) if self._deadline is not None else step)
        except StopAsyncIteration:
            raise
        except Exception as exc:
            self.cancel()
            raise translate(exc, self.model) from None

    def cancel(self) -> None:
        self._gen.cancel()
