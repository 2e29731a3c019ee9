"""Application builders for `serve run` / `serve deploy` (`import_path: serve_app.builder:build_app`).

The Serve config's `args` is a `SwitchboardConfig`; a bad one fails start-up with the field named.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from ray import serve
from ray.serve import Application

from serve_app.config import ModelSpec, SwitchboardConfig
from serve_app.errors import ConfigError


def load_config(args: dict[str, Any] | SwitchboardConfig) -> SwitchboardConfig:
    if isinstance(args, SwitchboardConfig):
        return args
    try:
        return SwitchboardConfig.model_validate(args or {})
    except ValidationError as exc:
        raise ConfigError(f"invalid Switchboard config: {exc}") from None


def bind_model(spec: ModelSpec, config: SwitchboardConfig) -> Application:
    """The model's deployment, bound with its options from config."""
    if spec.family == "llm" and spec.backend.kind == "vllm":
        from deployments.llm.vllm_server import build_vllm_deployment

        return build_vllm_deployment(spec)
    if spec.family == "llm":
        from deployments.llm import LLMDeployment, get_deployment_options

        options = {**get_deployment_options(spec), "logging_config": config.logging.serve_dict()}
        return serve.deployment(LLMDeployment, **options).bind(spec)
    raise ConfigError(f"model {spec.name!r}: family {spec.family!r} has no deployment yet")


def ingress_options(config: SwitchboardConfig) -> dict[str, Any]:
    spec = config.ingress
    return {
        "name": "ingress",
        "ray_actor_options": spec.resources.ray_actor_options(),
        "autoscaling_config": spec.autoscaling.serve_dict(),
        "max_ongoing_requests": spec.max_ongoing_requests,
        "logging_config": config.logging.serve_dict(),
    }


def build_app(args: dict[str, Any] | SwitchboardConfig) -> Application:
    config = load_config(args)
    from serve_app.ingress import SwitchboardIngress

    handles = {spec.name: bind_model(spec, config) for spec in config.models}
    return serve.deployment(SwitchboardIngress, **ingress_options(config)).bind(config, handles)
