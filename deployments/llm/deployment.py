"""The LLM deployment: loads its backend, proves it can answer one token, serves chats."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from deployments.calls import PROBE_CALL, ChatCall
from deployments.base import ModelDeployment
from deployments.llm.backend import LLMBackend
from serve_app.config import ModelSpec
from serve_app.errors import DeadlineExceeded, ModelError

def make_backend(spec: ModelSpec) -> LLMBackend:
    kind = spec.backend.kind
    if kind == "llama_cpp":
        from deployments.llm.llama_cpp_backend import LlamaCppBackend

        return LlamaCppBackend(spec.backend)
    if kind == "upstream":
        from deployments.llm.upstream_backend import UpstreamBackend

        return UpstreamBackend(spec.backend)
    if kind == "transformers":
        from deployments.llm.transformers_backend import TransformersBackend

        return TransformersBackend(spec.backend)
    if kind == "vllm":
        from deployments.llm.vllm_backend import VLLMBackend

        return VLLMBackend(spec)
    raise ValueError(f"no LLM backend {kind!r}")


class LLMDeployment(ModelDeployment):
    """A text LLM behind one interface. Fails construction if the model cannot answer one token."""

    def make_backend(self, spec: ModelSpec) -> LLMBackend:
        return make_backend(spec)

    async def chat(self, call: ChatCall) -> dict[str, Any]:
        return await self._within(call.budget_s, lambda: self._backend.chat(call))

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

    async def _probe_once(self) -> None:
        result = await self._backend.chat(ChatCall(request_id="probe", budget_s=self._spec.probe_timeout_s,
                                                   **PROBE_CALL))
        if not result.get("choices"):
            raise ModelError(f"probe of {self._spec.name} returned no choices")
