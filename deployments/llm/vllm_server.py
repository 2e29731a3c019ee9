"""vLLM through `ray.serve.llm` (GPU roster).

The model runs in Ray Serve LLM's own `LLMServer` deployment (built by `build_llm_deployment`,
which sizes its placement group from the engine config); the ingress talks to it through
serve_app/llm_server_client.py. `ray.serve.llm` imports vLLM at import time, so
everything here that touches it is imported lazily and only on a GPU roster.
"""

from __future__ import annotations

from typing import Any

from vocabulary.config import ModelSpec
from vocabulary.model_source import package_dir


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
            **spec.autoscaling.placement_options(),
            "max_ongoing_requests": spec.max_ongoing_requests,
            "max_queued_requests": spec.max_queued_requests,
            "ray_actor_options": {"num_cpus": spec.resources.num_cpus},
        },
    }


def build_vllm_deployment(spec: ModelSpec):
    """Ray Serve LLM's LLMServer for `spec`, bound and ready to be handed to the ingress."""
    from ray.serve.llm import LLMConfig, build_llm_deployment  # imports vLLM

    return build_llm_deployment(LLMConfig(**llm_config_kwargs(spec)))
