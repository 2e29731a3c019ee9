"""Typed configuration of a Switchboard application (the `args` of a Serve config file).

Every model of the roster is a `ModelSpec`: its family, its backend (a tagged union, one
sub-model per engine), the Ray resources and autoscaling of its deployment. Unknown keys
are rejected everywhere (`extra="forbid"`), so a typo fails start-up with the field named.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

Family = Literal["llm", "router", "vision", "stt", "tts", "clone", "search"]
RESERVED_MODEL_NAMES = frozenset({"auto"})


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSource(StrictModel):
    """Where weights come from: an installed Python package or a local path. Never a hub."""

    package: str | None = Field(None, description="Import name of an installed package that ships the model.")
    path: str | None = Field(None, description="Local file or directory.")
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

    def ray_actor_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            opts["num_gpus"] = self.num_gpus
        if self.memory is not None:
            opts["memory"] = self.memory
        return opts


class AutoscalingSpec(StrictModel):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(30.0, ge=0)
    downscale_delay_s: float = Field(600.0, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingSpec":
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self

    def serve_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class LlamaCppBackend(StrictModel):
    """llama.cpp in-process (llama-cpp-python): the CPU default."""

    kind: Literal["llama_cpp"]
    source: ModelSource
    n_ctx: int = Field(2048, ge=128)
    n_threads: int = Field(1, ge=1)
    n_batch: int = Field(256, ge=8)


class UpstreamBackend(StrictModel):
    """An OpenAI-compatible server the user already runs (vLLM, llama.cpp, TGI, ...)."""

    kind: Literal["upstream"]
    base_url: str = Field(description="Base URL including /v1, e.g. http://127.0.0.1:8001/v1")
    model: str = Field(description="Model name the upstream serves.")
    api_key_env: str | None = Field(None, description="Environment variable holding the upstream's API key.")
    timeout_s: float = Field(120.0, gt=0)
    max_connections: int = Field(64, ge=1)


class VLLMBackend(StrictModel):
    """vLLM through `ray.serve.llm` (GPU roster)."""

    kind: Literal["vllm"]
    source: ModelSource
    served_model_name: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Passed to vLLM's engine as is.")


LLMBackendSpec = Annotated[Union[LlamaCppBackend, UpstreamBackend, VLLMBackend], Field(discriminator="kind")]

DEFAULT_DEPLOYMENT_TIMEOUTS = {"health_check_period_s": 10.0, "health_check_timeout_s": 30.0}


class ModelSpec(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Name clients use in `model`.")
    family: Family
    backend: LLMBackendSpec
    resources: ResourceSpec = ResourceSpec()
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    max_ongoing_requests: int = Field(8, ge=1)
    probe_timeout_s: float = Field(10.0, gt=0, description="Deadline of the start-up and health probes.")

    @model_validator(mode="after")
    def _name_not_reserved(self) -> "ModelSpec":
        if self.name in RESERVED_MODEL_NAMES:
            raise ValueError(f"model name {self.name!r} is reserved")
        return self

    def deployment_name(self) -> str:
        return f"{self.family}-{self.name}"


class IngressSpec(StrictModel):
    resources: ResourceSpec = ResourceSpec(num_cpus=0.25)
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    max_ongoing_requests: int = Field(256, ge=1)


class LimitSpec(StrictModel):
    max_body_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Larger request bodies get 413.")
    max_messages: int = Field(256, ge=1)


class DeadlineSpec(StrictModel):
    default_ms: int = Field(60_000, gt=0, description="Total deadline of a request unless the client asks less.")
    max_ms: int = Field(300_000, gt=0, description="Cap on the x-switchboard-deadline-ms header.")

    @model_validator(mode="after")
    def _order(self) -> "DeadlineSpec":
        if self.default_ms > self.max_ms:
            raise ValueError("default_ms must not exceed max_ms")
        return self


class HealthSpec(StrictModel):
    cache_s: float = Field(5.0, ge=0, description="How long one /api/health result is reused.")
    probe_timeout_s: float = Field(5.0, gt=0)


class LoggingSpec(StrictModel):
    encoding: Literal["JSON", "TEXT"] = Field("JSON", description="Format of every replica's log lines.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def serve_dict(self) -> dict[str, Any]:
        return self.model_dump()


class SwitchboardConfig(StrictModel):
    """The whole application: the roster and the ingress' policies."""

    models: list[ModelSpec] = Field(min_length=1)
    ingress: IngressSpec = IngressSpec()
    limits: LimitSpec = LimitSpec()
    deadlines: DeadlineSpec = DeadlineSpec()
    health: HealthSpec = HealthSpec()
    logging: LoggingSpec = LoggingSpec()

    @model_validator(mode="after")
    def _roster(self) -> "SwitchboardConfig":
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate model names: {dupes}")
        if not any(m.family == "llm" for m in self.models):
            raise ValueError("the roster needs at least one model of family 'llm'")
        return self

    def by_name(self) -> dict[str, ModelSpec]:
        return {m.name: m for m in self.models}

    def default_model(self, family: Family) -> ModelSpec | None:
        return next((m for m in self.models if m.family == family), None)
