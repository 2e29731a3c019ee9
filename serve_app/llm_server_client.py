"""Ray Serve LLM's `LLMServer` (vLLM, GPU roster) as seen from the ingress: `VLLMAdapter` converts
our `ChatCall` to what `LLMServer.chat` takes and its answers back; `LLMServerModelClient` puts it
behind the ModelClient interface. Nothing here imports vLLM until a GPU roster calls it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from graphs.deadline import Deadline
from serve_app.in_process_client import InIngressModel
from serve_app.model_client import ModelClient, ModelStream, translate
from vocabulary.calls import PROBE_CALL, ChatCall
from vocabulary.errors import ModelError, SwitchboardError, UpstreamError
from vocabulary.special_tokens import marker_pattern, neutralise_messages

COMMON_PATTERN = marker_pattern()


async def model_clients(specs: dict[str, Any], handles: dict[str, Any]) -> dict[str, Any]:
    """The clients of the roster, in its order: a deployment's handle wrapped, or a model placed in the
    ingress built here (every one at once, each with its probe)."""
    local = [name for name, handle in handles.items() if isinstance(handle, InIngressModel)]
    built = dict(zip(local, await asyncio.gather(*(handles[name].client() for name in local))))
    return {name: built[name] if name in built else model_client(specs[name], handle)
            for name, handle in handles.items()}


def model_client(spec, handle) -> "ModelClient":
    """The client for a roster entry's deployment."""
    if spec.backend.kind == "vllm":
        return LLMServerModelClient(spec.name, handle, VLLMAdapter(spec.backend.served_model_name or spec.name))
    return ModelClient(spec.name, handle)


class LLMServerModelClient(ModelClient):
    """Ray Serve LLM's `LLMServer` (vLLM, GPU roster) behind the ModelClient interface."""

    def __init__(self, name: str, handle, adapter) -> None:
        super().__init__(name, handle)
        self._adapter = adapter

    async def warm(self, timeout_s: float = 30.0) -> None:
        """LLMServer has no `stats`; its first call sets its handle up."""

    def _generator(self, call: ChatCall, stream: bool, deadline: Deadline | None) -> ModelStream:
        return ModelStream(self.name, self._stream_handle.chat.remote(self._adapter.request(call, stream)), deadline)

    async def call(self, method: str, payload: ChatCall, deadline: Deadline | None = None) -> dict:
        stream = self._generator(payload, False, deadline)
        try:
            return self._adapter.completion([item async for item in stream])
        except SwitchboardError:
            raise
        except Exception as exc:
            raise translate(exc, self.name) from None

    async def stream(self, method: str, payload: ChatCall, deadline: Deadline | None = None) -> "FlatStream":
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


class VLLMAdapter:
    """Converts between our ChatCall / OpenAI dicts and what `LLMServer.chat` takes and yields."""

    def __init__(self, served_model_name: str) -> None:
        self.served_model_name = served_model_name

    def request(self, call: ChatCall, stream: bool):
        from ray.llm._internal.serve.core.configs.openai_api_models import (
            ChatCompletionRequest,
        )

        # vLLM applies the model's template itself: the common chat markers are kept out of client text
        messages = neutralise_messages(call.messages, COMMON_PATTERN)
        return ChatCompletionRequest(model=self.served_model_name, messages=messages, stream=stream,
                                     **call.sampling())

    @staticmethod
    def completion(items: list[Any]) -> dict[str, Any]:
        """The one ChatCompletionResponse a non-streaming chat yields, as a dict."""
        for item in items:
            _raise_if_error(item)
            return item.model_dump() if hasattr(item, "model_dump") else item
        raise ModelError("vLLM returned nothing")

    @staticmethod
    def chunks(item: Any) -> list[dict[str, Any]]:
        """Streamed items are lists of SSE strings ("data: {...}\\n\\n"); parse them to dicts."""
        _raise_if_error(item)
        out = []
        for line in item if isinstance(item, list) else [item]:
            _raise_if_error(line)
            data = line.strip().removeprefix("data:").strip() if isinstance(line, str) else None
            if data and data != "[DONE]":
                chunk = json.loads(data)
                if "error" in chunk:
                    raise UpstreamError(f"vLLM: {chunk['error'].get('message')}", http_status=502)
                out.append(chunk)
        return out


def _raise_if_error(item: Any) -> None:
    if type(item).__name__ == "ErrorResponse":
        error = getattr(item, "error", item)
        status = int(getattr(error, "code", 500) or 500)
        raise UpstreamError(f"vLLM returned {status}: {getattr(error, 'message', error)}",
                            http_status=status if 400 <= status < 600 else 502)
