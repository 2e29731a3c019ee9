"""Serve deployment options from a roster entry: nothing about resources is hard-coded."""

from __future__ import annotations

from typing import Any

from ray.serve.config import BackpressureConfig

from vocabulary.config import ModelSpec
from vocabulary.errors import Overloaded

# A request past a queue's bound: 503 with retry-after (what Serve's proxy answers for the ingress).
SHED = BackpressureConfig(status_code=503, retry_after_s=Overloaded.retry_after_s)


def deployment_options(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": spec.deployment_name(),
        "ray_actor_options": spec.resources.ray_actor_options(),
        "autoscaling_config": spec.autoscaling.serve_dict(),
        **spec.autoscaling.placement_options(),
        "max_ongoing_requests": spec.max_ongoing_requests,
        "max_queued_requests": spec.max_queued_requests,
        "backpressure_config": SHED,
        "health_check_period_s": 10.0,
        "health_check_timeout_s": 30.0,
    }
