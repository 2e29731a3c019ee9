"""Application builders for `serve run` / `serve deploy` (`import_path: serve_app.builder:build_app`).

The Serve config's `args` is a `SwitchboardConfig`; a bad one fails start-up with the field named.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError
from ray import serve
from ray.serve import Application

from deployments.options import SHED, deployment_options
from serve_app.in_process_client import InIngressModel
from vocabulary.config import ModelSpec, SwitchboardConfig
from vocabulary.errors import ConfigError


def load_config(args: dict[str, Any] | SwitchboardConfig) -> SwitchboardConfig:
    if isinstance(args, SwitchboardConfig):
        return args
    try:
        return SwitchboardConfig.model_validate(args or {})
    except ValidationError as exc:
        raise ConfigError(f"invalid Switchboard config: {exc}") from None


DEPLOYMENT_CLASSES = {
    "llm": "deployments.llm:LLMDeployment",
    "stt": "deployments.stt:STTDeployment",
    "tts": "deployments.tts:TTSDeployment",
    "clone": "deployments.clone:CloneDeployment",
    "vision": "deployments.vision:VisionDeployment",
    "search": "deployments.search:SearchDeployment",
}


def _deployment_class(family: str):
    path = DEPLOYMENT_CLASSES.get(family)
    if path is None:
        raise ConfigError(f"family {family!r} has no deployment")
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


async def build_in_ingress(spec: ModelSpec) -> Any:
    """A model placed in the ingress, built in the ingress' process: the same deployment class a Serve
    replica would run, probe included (a model that cannot answer fails the ingress' start, as its
    deployment would)."""
    return await _deployment_class(spec.family).create(spec)


def bind_model(spec: ModelSpec, config: SwitchboardConfig) -> "Application | InIngressModel":
    """The model's deployment, bound with its options from config; for a model placed in the ingress,
    what the ingress builds it from."""
    if spec.in_ingress():
        return InIngressModel(spec, build_in_ingress)
    if spec.family == "llm" and spec.backend.kind == "vllm":
        from deployments.llm.vllm_server import build_vllm_deployment

        return build_vllm_deployment(spec)
    options = {**deployment_options(spec), "logging_config": config.logging.serve_dict()}
    return serve.deployment(_deployment_class(spec.family), **options).bind(spec)


def ingress_options(config: SwitchboardConfig) -> dict[str, Any]:
    spec = config.ingress
    return {
        "name": "ingress",
        "ray_actor_options": spec.resources.ray_actor_options(),
        "autoscaling_config": spec.autoscaling.serve_dict(),
        **spec.autoscaling.placement_options(),
        "max_ongoing_requests": spec.max_ongoing_requests,
        "max_queued_requests": spec.max_queued_requests,
        "backpressure_config": SHED,
        "logging_config": config.logging.serve_dict(),
    }


def build_app(args: dict[str, Any] | SwitchboardConfig) -> Application:
    config = load_config(args)
    from serve_app.ingress import SwitchboardIngress

    handles = {spec.name: bind_model(spec, config) for spec in config.models}
    router = bind_router(config) if config.router.placement == "deployment" else None
    return serve.deployment(SwitchboardIngress, **ingress_options(config)).bind(config, handles, router)


def bind_router(config: SwitchboardConfig) -> Application:
    from deployments.router import RouterDeployment

    spec = config.router
    return serve.deployment(RouterDeployment, name="router", ray_actor_options=spec.resources.ray_actor_options(),
                            autoscaling_config=spec.autoscaling.serve_dict(), **spec.autoscaling.placement_options(),
                            max_ongoing_requests=spec.max_ongoing_requests,
                            max_queued_requests=spec.max_queued_requests, backpressure_config=SHED,
                            logging_config=config.logging.serve_dict()).bind(spec)
