"""The LLM deployment: loads its backend, proves it can answer one token, serves chats."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator

from deployments.calls import PROBE_CALL, ChatCall
from deployments.llm.backend import LLMBackend
from deployments.options import deployment_options
from serve_app.config import ModelSpec
from serve_app.errors import DeadlineExceeded, ModelError, SwitchboardError

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")


def make_backend(spec: ModelSpec) -> LLMBackend:
    kind = spec.backend.kind
    if kind == "llama_cpp":
        from deployments.llm.llama_cpp_backend import LlamaCppBackend

        return LlamaCppBackend(spec.backend)
    if kind == "upstream":
        from deployments.llm.upstream_backend import UpstreamBackend

        return UpstreamBackend(spec.backend)
    if kind == "vllm":
        from deployments.llm.vllm_backend import VLLMBackend

        return VLLMBackend(spec)
    raise ValueError(f"no LLM backend {kind!r}")


def get_deployment_options(spec: ModelSpec) -> dict[str, Any]:
    return deployment_options(spec)


class LLMDeployment:
    """A text LLM behind one interface. Fails construction if the model cannot answer."""

    async def __init__(self, spec: ModelSpec, backend: LLMBackend | None = None) -> None:
        self._spec = spec
        self._backend = backend or make_backend(spec)
        await self._backend.start()
        latency = await self.probe()
        logger.info("model ready", extra={"model": spec.name, "probe_latency_ms": latency})

    async def chat(self, call: ChatCall) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self._backend.chat(call), timeout=call.budget_s)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"model {self._spec.name} ran out of time") from exc

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        deadline = time.monotonic() + call.budget_s
        stream = self._backend.chat_stream(call)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded(f"model {self._spec.name} ran out of time while streaming")
                try:
                    chunk = await asyncio.wait_for(anext(stream), timeout=remaining)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    raise DeadlineExceeded(f"model {self._spec.name} ran out of time while streaming") from exc
                yield chunk
        finally:
            await stream.aclose()

    async def probe(self) -> float:
        """Generate one token; return the latency in ms. Raises ModelError if the model cannot."""
        call = ChatCall(request_id="probe", budget_s=self._spec.probe_timeout_s, **PROBE_CALL)
        started = time.perf_counter()
        try:
            result = await self.chat(call)
        except SwitchboardError as exc:
            raise ModelError(f"probe of {self._spec.name} failed: {exc.message}") from exc
        if not result.get("choices"):
            raise ModelError(f"probe of {self._spec.name} returned no choices")
        return round((time.perf_counter() - started) * 1000, 2)

    async def check_health(self) -> None:
        await self._backend.check()

    async def __del__(self) -> None:
        await self._backend.close()

