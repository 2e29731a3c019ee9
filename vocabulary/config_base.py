"""Building blocks shared by the config modules."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vocabulary.paths import PATH_RULE, ConfigPath


QUEUE_DOC = ("Requests one caller (an ingress replica) keeps waiting for a free replica of this deployment; past it "
             "a request is shed at once (503 overloaded, retry-after) and a failover chain tries its next model. "
             "-1: no bound.")


class StrictModel(BaseModel):
    """Unknown keys are errors; configs are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(StrictModel):
    """Where weights come from: an installed Python package or a local path. Never a hub."""

    package: str | None = Field(None, description="Import name of an installed package that ships the model.")
    path: ConfigPath | None = Field(None, description="Local file or directory (models/assembled/ is built at "
                                                       "install time). " + PATH_RULE)
    file: str | None = Field(
        None, description="Glob inside the package or directory that selects the model file, e.g. '*.gguf'."
    )

    @model_validator(mode="after")
    def _one_origin(self) -> "ModelSource":
        if (self.package is None) == (self.path is None):
            raise ValueError("give exactly one of 'package' or 'path'")
        return self


class ResourceSpec(StrictModel):
    num_cpus: float = Field(0.25, ge=0, description="CPUs reserved per replica (fractions are fine).")
    num_gpus: float = Field(0, ge=0, description="GPUs reserved per replica.")
    memory: int | None = Field(None, gt=0, description="Bytes of memory reserved per replica.")
    custom: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources each replica needs, e.g. {accelerator_node: 0.1}: "
                                          "the replica is placed only on nodes started with them "
                                          "(`ray start --resources '{\"accelerator_node\": 1}'`).")

    def ray_actor_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            opts["num_gpus"] = self.num_gpus
        if self.memory is not None:
            opts["memory"] = self.memory
        if self.custom:
            opts["resources"] = dict(self.custom)
        return opts


class AutoscalingSpec(StrictModel):
    """Serve's autoscaling of one deployment (its `autoscaling_config`), plus where replicas may go."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(2.0, gt=0, description="Requests in flight per replica that Serve "
                                                                  "aims for: more scales up, fewer scales down.")
    upscale_delay_s: float = Field(30.0, ge=0, description="How long the load must call for more replicas first.")
    downscale_delay_s: float = Field(600.0, ge=0, description="How long the load must call for fewer replicas first.")
    look_back_period_s: float | None = Field(None, gt=0, description="The window Serve averages the load over "
                                                                     "(Serve's default: 30 s).")
    max_replicas_per_node: int | None = Field(
        None, ge=1, description="At most this many replicas of the deployment on one node (Serve's deployment "
                                "option): spreads a model's replicas over GPU nodes.")

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingSpec":
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self

    def serve_dict(self) -> dict[str, Any]:
        """Serve's `autoscaling_config`."""
        return self.model_dump(exclude_none=True, exclude={"max_replicas_per_node"})

    def placement_options(self) -> dict[str, Any]:
        """Deployment options beside `autoscaling_config`."""
        return {} if self.max_replicas_per_node is None else {"max_replicas_per_node": self.max_replicas_per_node}
