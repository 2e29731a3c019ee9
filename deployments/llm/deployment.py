"""The LLM deployment: loads its backend, proves it can answer one token, serves chats.

Every answer is streamed from the engine, whole answers too (assembled here), so that a caller that
leaves or runs out of time stops the engine within a token: nothing generates for nobody."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from typing import Any, AsyncIterator

from deployments.base import ModelDeployment
from deployments.llm.backend import ANSWERING_S, LLMBackend
from vocabulary.special_tokens import marker_pattern, neutralise_messages
from deployments.llm.tool_calls import needs_tool_rewrite, stream_tool_calls, tool_call_request
from vocabulary.calls import PROBE_CALL, ChatCall
from vocabulary.chat_chunks import assemble
from vocabulary.config import ModelSpec
from vocabulary.errors import DeadlineExceeded, InvalidRequest, ModelError

IN_PROCESS_ENGINES = frozenset({"llama_cpp", "transformers"})


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
    raise ValueError(f"no LLM backend {kind!r} (vllm runs in Ray Serve LLM's own deployment)")


class LLMDeployment(ModelDeployment):
    """A text LLM behind one interface. Fails construction if the model cannot answer one token."""

    _marker_pattern: re.Pattern[str] | None = None

    def make_backend(self, spec: ModelSpec) -> LLMBackend:
        return make_backend(spec)

    async def chat(self, call: ChatCall) -> dict[str, Any]:
        """A whole answer, assembled from the engine's stream."""
        return assemble([chunk async for chunk in self.chat_stream(call)], self._spec.name)

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[dict[str, Any]]:
        """The engine's chunks until it finishes, the call's budget ends, or the caller leaves.

        In-process engines count lengths in tokens themselves and have no tool parser: tools become
        a json_schema call here, and the engine's JSON comes back as OpenAI tool-call chunks. Remote
        engines (upstream servers) get tools as they are; an answer without max_tokens is cut at
        max_tokens_cap chunks there (finish_reason "length")."""
        deadline = time.monotonic() + call.budget_s
        in_process = self._spec.backend.kind in IN_PROCESS_ENGINES
        cap = call.max_tokens_cap if call.max_tokens is None and not in_process else None
        produced = 0
        engine_call = _tool_call_request(call) if in_process and needs_tool_rewrite(call) else call
        engine_call = replace(engine_call, messages=neutralise_messages(engine_call.messages, self._markers()))
        engine = self._backend.chat_stream(engine_call)
        stream = engine
        if engine_call is not call and call.tools and call.tool_choice != "none":
            stream = stream_tool_calls(engine, json_content=call.json_schema() is not None)
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
                produced += sum(1 for c in chunk.get("choices") or () if (c.get("delta") or {}).get("content"))
                if cap is not None and produced >= cap and not _finishes(chunk):
                    yield chunk
                    yield _finish(chunk, "length")
                    return
                yield chunk
        finally:
            if stream is not engine:
                await stream.aclose()
            await engine.aclose()  # the backend's own finally stops its engine

    def _markers(self) -> re.Pattern[str]:
        """The engine's special-token strings and the common chat markers, as one pattern (built once)."""
        if self._marker_pattern is None:
            self._marker_pattern = marker_pattern(self._backend.special_texts())
        return self._marker_pattern

    async def stats(self, _: Any = None) -> dict[str, Any]:
        """What the engine of this replica is doing and has done, counted by the engine."""
        counters = self._backend.counters.as_dict()
        return {"model": self._spec.name, "ongoing": counters["engine_active"], **counters}

    async def check_health(self) -> None:
        if not self._backend.counters.answering(ANSWERING_S):
            await super().check_health()

    async def _probe_once(self) -> None:
        """A tiny chat, unless the engine is answering now: the probe would wait behind that answer
        (in-process engines serve one at a time) or cut it short (llama-cpp-python's server ends a
        stream when another request arrives)."""
        if self._backend.counters.answering(ANSWERING_S):
            return
        result = await self.chat(ChatCall(request_id="probe", budget_s=self._spec.probe_timeout_s, **PROBE_CALL))
        if not result.get("choices"):
            raise ModelError(f"probe of {self._spec.name} returned no choices")


def _tool_call_request(call: ChatCall) -> ChatCall:
    """The engine's call for tools or tool history; what cannot be rendered is the client's 400."""
    try:
        return tool_call_request(call)
    except (RecursionError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise InvalidRequest(f"the tools or the tool calls in messages cannot be read: {type(exc).__name__}",
                             param="messages") from None


def _finishes(chunk: dict[str, Any]) -> bool:
    return any(c.get("finish_reason") for c in chunk.get("choices") or ())


def _finish(like: dict[str, Any], reason: str) -> dict[str, Any]:
    return {"id": like.get("id"), "object": "chat.completion.chunk", "created": like.get("created"),
            "model": like.get("model", ""), "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
