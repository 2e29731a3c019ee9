"""Serve deployment options from a roster entry: nothing about resources is hard-coded."""

from __future__ import annotations

from typing import Any

from vocabulary.config import ModelSpec


def deployment_options(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": spec.deployment_name(),
        "ray_actor_options": spec.resources.ray_actor_options(),
        "autoscaling_config": spec.autoscaling.serve_dict(),
        "max_ongoing_requests": spec.max_ongoing_requests,
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
    }
