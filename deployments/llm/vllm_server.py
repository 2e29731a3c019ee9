"""vLLM through `ray.serve.llm` (GPU roster).

The model runs in Ray Serve LLM's own `LLMServer` deployment (built by `build_llm_deployment`,
which sizes its placement group from the engine config); `VLLMAdapter` converts our `ChatCall`
to what it takes and back. `ray.serve.llm` imports vLLM at import time, so
everything here that touches it is imported lazily and only on a GPU roster.
"""

from __future__ import annotations

import json
from typing import Any

from deployments.calls import ChatCall
from deployments.model_source import package_dir
from serve_app.config import ModelSpec
from serve_app.errors import ModelError, UpstreamError


def llm_config_kwargs(spec: ModelSpec) -> dict[str, Any]:
    """Arguments of `ray.serve.llm.LLMConfig` for a roster entry (pure; no vLLM needed)."""
    backend = spec.backend
    source = backend.source
    model_source = source.path if source.path else str(package_dir(source.package))
    engine_kwargs = {"tensor_parallel_size": max(1, int(spec.resources.num_gpus)), **backend.engine_kwargs}
    return {
        "model_loading_config": {"model_id": backend.served_model_name or spec.name, "model_source": model_source},
        "engine_kwargs": engine_kwargs,
        "deployment_config": {
            "name": spec.deployment_name(),
            "autoscaling_config": spec.autoscaling.serve_dict(),
            "max_ongoing_requests": spec.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": spec.resources.num_cpus},
        },
    }


def build_vllm_deployment(spec: ModelSpec):
    """Ray Serve LLM's LLMServer for `spec`, bound and ready to be handed to the ingress."""
    from ray.serve.llm import LLMConfig, build_llm_deployment  # imports vLLM

    return build_llm_deployment(LLMConfig(**llm_config_kwargs(spec)))


class VLLMAdapter:
    """Converts between our ChatCall / OpenAI dicts and what `LLMServer.chat` takes and yields."""

    def __init__(self, served_model_name: str) -> None:
        self.served_model_name = served_model_name

    def request(self, call: ChatCall, stream: bool):
        from ray.llm._internal.serve.core.configs.openai_api_models import ChatCompletionRequest

        return ChatCompletionRequest(model=self.served_model_name, messages=call.messages, stream=stream,
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
