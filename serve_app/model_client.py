"""Calls from the ingress to model deployments, each under the request's remaining deadline.

Errors come back as SwitchboardErrors: the deployment's own when it raised one, a ModelError
naming the model otherwise (replica death, actor errors), DeadlineExceeded on time-out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator

from deployments.calls import PROBE_CALL, ChatCall
from graphs.deadline import Deadline, DeadlineExpired
from serve_app.errors import DeadlineExceeded, ModelError, SwitchboardError, as_switchboard_error

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


def translate(exc: BaseException, model: str) -> SwitchboardError:
    if isinstance(exc, DeadlineExpired):
        return DeadlineExceeded(f"model {model} did not answer within the request's deadline")
    found = as_switchboard_error(exc)
    if found is not None:
        return found
    logger.error("model call failed", extra={"model": model, "error": f"{type(exc).__name__}: {exc}"[:500]})
    return ModelError(f"model {model} failed ({type(exc).__name__})")


class ModelClient:
    """A model deployment's handle, called with deadlines."""

    def __init__(self, name: str, handle) -> None:
        self.name = name
        self._handle = handle
        self._stream_handle = handle.options(stream=True)

    async def call(self, method: str, payload: Any, deadline: Deadline) -> Any:
        response = getattr(self._handle, method).remote(payload)
        try:
            return await deadline.run(response)
        except asyncio.CancelledError:
            response.cancel()  # a cancelled caller cancels the replica's work too
            raise
        except Exception as exc:
            response.cancel()
            raise translate(exc, self.name) from None

    async def stream(self, method: str, payload: Any, deadline: Deadline) -> "ModelStream":
        return ModelStream(self.name, getattr(self._stream_handle, method).remote(payload), deadline)

    async def probe(self) -> float:
        try:
            return await self._handle.probe.remote()
        except Exception as exc:
            raise translate(exc, self.name) from None


class ModelStream:
    """A streaming response whose every chunk is awaited under the deadline."""

    def __init__(self, model: str, generator, deadline: Deadline) -> None:
        self.model = model
        self._gen = generator
        self._deadline = deadline

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._deadline.run(self._gen.__anext__())
        except StopAsyncIteration:
            raise
        except Exception as exc:
            self.cancel()
            raise translate(exc, self.model) from None

    def cancel(self) -> None:
        self._gen.cancel()


def model_client(spec, handle) -> "ModelClient":
    """The client for a roster entry's deployment."""
    if spec.backend.kind == "vllm":
        from deployments.llm.vllm_server import VLLMAdapter

        return LLMServerModelClient(spec.name, handle, VLLMAdapter(spec.backend.served_model_name or spec.name))
    return ModelClient(spec.name, handle)


class LLMServerModelClient(ModelClient):
    """Ray Serve LLM's `LLMServer` (vLLM, GPU roster) behind the ModelClient interface."""

    def __init__(self, name: str, handle, adapter) -> None:
        super().__init__(name, handle)
        self._adapter = adapter

    def _generator(self, call: ChatCall, stream: bool, deadline: Deadline) -> ModelStream:
        return ModelStream(self.name, self._stream_handle.chat.remote(self._adapter.request(call, stream)), deadline)

    async def call(self, method: str, payload: ChatCall, deadline: Deadline) -> dict:
        stream = self._generator(payload, False, deadline)
        try:
            return self._adapter.completion([item async for item in stream])
        except SwitchboardError:
            raise
        except Exception as exc:
            raise translate(exc, self.name) from None

    async def stream(self, method: str, payload: ChatCall, deadline: Deadline) -> "FlatStream":
        return FlatStream(self._generator(payload, True, deadline), self._adapter.chunks)

    async def probe(self) -> float:
        started = time.perf_counter()
        await self.call("chat", ChatCall(request_id="probe", budget_s=10.0, **PROBE_CALL), Deadline(10.0))
        return round((time.perf_counter() - started) * 1000, 2)


class FlatStream:
    """A ModelStream whose items are batches; yields their chunks one by one."""

    def __init__(self, stream: ModelStream, explode) -> None:
        self._stream = stream
        self._explode = explode
        self._pending: list = []

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._pending:
            self._pending = list(self._explode(await self._stream.__anext__()))
        return self._pending.pop(0)

    def cancel(self) -> None:
        self._stream.cancel()
