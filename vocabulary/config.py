"""Typed configuration of a Switchboard application (the `args` of a Serve config file).

Every model of the roster is a `ModelSpec`: its family, its backend (a tagged union, one
sub-model per engine), the Ray resources and autoscaling of its deployment. Unknown keys
are rejected everywhere (`extra="forbid"`), so a typo fails start-up with the field named.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

IN_INGRESS_BACKENDS = frozenset({"upstream"})  # a client that only forwards to a server: no hop needed
Family = Literal["llm", "router", "vision", "stt", "tts", "clone", "search"]  # keys of FAMILY_BACKENDS
RESERVED_MODEL_NAMES = frozenset({"auto"})
# How long a healthy model may take to show progress: an LLM streams tokens; the others answer whole
# (600 s of audio takes about a minute on two cores).
FAMILY_STALL_MS = {"llm": 10_000, "router": 10_000, "vision": 60_000, "stt": 300_000, "tts": 120_000,
                   "clone": 120_000, "search": 15_000}


from vocabulary.access_config import ClientKeysSpec
from vocabulary.backend_specs import FAMILY_BACKENDS, BackendSpec
from vocabulary.capabilities import Capabilities, CapabilityOverrides, engine_capabilities
from vocabulary.config_base import (
    QUEUE_DOC,
    AutoscalingSpec,
    ModelSource,
    ResourceSpec,
    StrictModel,
)
from vocabulary.paths import PATH_RULE, ConfigPath
from vocabulary.resilience_config import FaultSpec, ResilienceSpec
from vocabulary.request_log_config import RequestLogSpec
from vocabulary.router_config import RouterSpec
from vocabulary.routes import LLM_ONLY, LLM_ONLY_ROUTES, ROUTE_FAMILY, Route

__all__ = ["AutoscalingSpec", "ModelSource", "ModelSpec", "ResourceSpec", "RouterSpec", "StrictModel",
           "SwitchboardConfig"]


class ModelSpec(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Name clients use in `model`.")
    family: Family
    backend: BackendSpec
    resources: ResourceSpec = ResourceSpec()
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    max_ongoing_requests: int = Field(8, ge=1)
    max_queued_requests: int = Field(32, ge=-1, description=QUEUE_DOC)
    probe_timeout_s: float = Field(10.0, gt=0, description="Deadline of the start-up and health probes.")
    stall_timeout_ms: int | None = Field(
        None, gt=0, description="A model that produces nothing for this long is hung: the chain moves on and it "
                                "counts on its breaker. For an LLM, the time to a token (the first or the next); "
                                "for other families, the time to the answer. Default by family: "
                                + ", ".join(f"{k} {v} ms" for k, v in FAMILY_STALL_MS.items()) + ".")
    capabilities: CapabilityOverrides | None = Field(
        None, description="LLMs: what differs from the engine's defaults (context_window, json_schema, tools, "
                          "logprobs, image_input). Requests that need a capability skip models without it.")
    placement: Literal["ingress", "deployment"] | None = Field(
        None, description="Where the model's client runs. `ingress`: inside each ingress replica (an `upstream` "
                          "server's client only forwards, so it costs no hop; its breaker, deadlines and "
                          "max_ongoing_requests/max_queued_requests bound it per ingress replica, and it scales "
                          "with the ingress). `deployment`: a Serve deployment of its own (its resources, "
                          "autoscaling and replicas). Default: ingress for an `upstream` backend that sets neither "
                          "custom resources, GPUs nor autoscaling; deployment for every other (only `upstream` may "
                          "run in the ingress).")

    @model_validator(mode="after")
    def _name_and_backend(self) -> "ModelSpec":
        if self.name in RESERVED_MODEL_NAMES:
            raise ValueError(f"model name {self.name!r} is reserved")
        allowed = FAMILY_BACKENDS[self.family]
        if self.backend.kind not in allowed:
            raise ValueError(f"backend {self.backend.kind!r} cannot serve family {self.family!r} "
                             f"(it takes: {', '.join(sorted(allowed))})")
        if self.placement == "ingress" and self.backend.kind not in IN_INGRESS_BACKENDS:
            raise ValueError(f"placement 'ingress' is for an upstream server's client; backend "
                             f"{self.backend.kind!r} loads a model and needs placement 'deployment'")
        if self.placement == "ingress" and self._places_a_deployment():
            raise ValueError("custom resources, GPUs and autoscaling place and scale a deployment of its own: "
                             "with placement 'ingress' they would mean nothing; drop them or set placement "
                             "'deployment'")
        return self

    def _places_a_deployment(self) -> bool:
        return bool(self.resources.custom or self.resources.num_gpus) or self.autoscaling != AutoscalingSpec()

    def in_ingress(self) -> bool:
        """Whether the model's client runs inside the ingress (no deployment of its own)."""
        if self.placement is None:
            return self.backend.kind in IN_INGRESS_BACKENDS and not self._places_a_deployment()
        return self.placement == "ingress"

    def caps(self) -> Capabilities:
        """What this model honours: its engine's defaults with the config's overrides."""
        base = engine_capabilities(self.backend) if self.family == "llm" else Capabilities()
        return self.capabilities.apply(base) if self.capabilities else base

    def stall_timeout_s(self) -> float:
        return (self.stall_timeout_ms or FAMILY_STALL_MS.get(self.family, 60_000)) / 1000

    def deployment_name(self) -> str:
        return f"{self.family}-{self.name}"


class IngressSpec(StrictModel):
    resources: ResourceSpec = ResourceSpec(num_cpus=0.25)
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    max_ongoing_requests: int = Field(256, ge=1)
    max_queued_requests: int = Field(
        512, ge=-1, description="Requests Serve's proxy keeps waiting for a free ingress replica; past it the proxy "
                                "answers 503 with retry-after at once. -1: no bound.")
    share_state: bool = Field(
        True, description="Ingress replicas share breakers, admin faults and flags written through PUT /api/flags "
                          "through one small actor per application (serve_app/shared_state): a breaker opened or a "
                          "fault injected through one replica holds on all, and survives a replica's restart.")


class LimitSpec(StrictModel):
    max_body_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Larger request bodies get 413.")
    max_body_bytes_in_flight: int = Field(
        256 * 1024 * 1024, gt=0, description="Request bodies one ingress replica holds at once (every request in "
                                             "flight keeps its body); a request that would pass it gets 503 with "
                                             "retry-after at once. At least max_body_bytes.")
    max_messages: int = Field(256, ge=1)
    max_output_tokens: int = Field(4096, ge=1, description="A larger max_tokens is lowered to this.")
    max_embedding_inputs: int = Field(256, ge=1, description="More inputs in one /v1/embeddings request get 400.")
    max_embedding_chars: int = Field(
        8192, ge=1, description="A longer /v1/embeddings input gets 413 (the embedding model reads 256 tokens).")

    @model_validator(mode="after")
    def _bodies_fit(self) -> "LimitSpec":
        if self.max_body_bytes_in_flight < self.max_body_bytes:
            raise ValueError(f"limits.max_body_bytes_in_flight ({self.max_body_bytes_in_flight}) must be at least "
                             f"limits.max_body_bytes ({self.max_body_bytes}): one largest body must fit")
        return self


class ImageFetchSpec(StrictModel):
    allow_private: bool = Field(False, description="Allow loopback/private/link-local addresses (never in production).")
    max_bytes: int = Field(10 * 1024 * 1024, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    max_redirects: int = Field(3, ge=0, le=10)


class MediaSpec(StrictModel):
    max_audio_seconds: float = Field(600.0, gt=0, description="Longer audio gets 400 audio_too_long.")
    max_image_pixels: int = Field(40_000_000, gt=0, description="Bigger images get 413 (decompression bombs).")
    max_tts_chars: int = Field(4096, gt=0, description="Longer text to speak gets 413.")
    max_image_parts: int = Field(8, ge=1, description="More image parts in one request get 413, before any model works.")
    max_audio_parts: int = Field(4, ge=1, description="More audio parts in one request get 413, before any model works.")
    max_request_pixels: int = Field(
        80_000_000, gt=0, description="Decoded pixels of all of a request's images together; more get 413 before "
                                      "any image is read.")
    max_request_audio_seconds: float = Field(
        1200.0, gt=0, description="Seconds of all of a request's audio together; more get 413 before any is heard.")
    image_fetch: ImageFetchSpec = ImageFetchSpec()


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
    access_log: bool = Field(
        False, description="Serve's own access line per request in every replica's log. Off by default: the "
                           "request log (request_log) has one line per request with far more in it, and Serve's "
                           "line (formatted, rollover checked) was 4 % of the ingress' CPU under load.")

    def serve_dict(self) -> dict[str, Any]:
        return {"encoding": self.encoding, "log_level": self.log_level, "enable_access_log": self.access_log}


class SttSpec(StrictModel):
    min_confidence: float = Field(
        0.7, ge=0, le=1, description="A transcript less sure than this is untrusted: marked so in the answer and "
                                     "the log, and the LLM is told it may be misheard.")


class CommitteeSpec(StrictModel):
    margin: float = Field(0.15, ge=0, le=1, description="Top two intents this close: both are asked.")
    mode: Literal["all", "first_valid"] = "all"
    vision_cross_check: bool = Field(True, description="Read each chat image with every vision model at once.")
    agreement_threshold: float = Field(0.8, ge=0, le=1, description="Below this the OCR reading is uncertain.")


class FlagsSpec(StrictModel):
    file: ConfigPath | None = Field(
        None, description="Feature flags in flagd's format (serve_app/flags/switches.py lists them); read through "
                          "OpenFeature. None: every switch keeps the config's value. " + PATH_RULE)
    poll_s: float = Field(1.0, gt=0, le=5, description="How often each ingress replica looks for a changed file.")


class ShadowSpec(StrictModel):
    """Requests also sent to a shadow model (the `shadow.<route>` flag names it) after the user's answer
    is on its way; the shadow's answer is only logged, beside the primary's, with their similarity."""

    max_queue: int = Field(32, ge=1, description="Shadow requests waiting at most; past it they are dropped "
                                                 "(and counted), never queued for the user's request.")
    concurrency: int = Field(1, ge=1, description="Shadow requests running at once per ingress replica.")
    timeout_s: float = Field(60.0, gt=0, description="A shadow call taking longer is ended and logged as a timeout.")


class SwitchboardConfig(StrictModel):
    """The whole application: the roster and the ingress' policies."""

    models: list[ModelSpec] = Field(min_length=1)
    ingress: IngressSpec = IngressSpec()
    limits: LimitSpec = LimitSpec()
    deadlines: DeadlineSpec = DeadlineSpec()
    health: HealthSpec = HealthSpec()
    logging: LoggingSpec = LoggingSpec()
    request_log: RequestLogSpec = RequestLogSpec()
    router: RouterSpec = RouterSpec()
    routes: dict[Route, list[str]] = Field(
        default_factory=dict,
        description="Failover chain per route, tried in order; 'llm_only' may end a chain. A route not "
                    "listed uses its family's models in roster order (then llm_only for vision, stt, tts, search).")
    resilience: ResilienceSpec = ResilienceSpec()
    faults: dict[str, FaultSpec] = Field(default_factory=dict, description="Faults injected from the start.")
    committee: CommitteeSpec = CommitteeSpec()
    media: MediaSpec = MediaSpec()
    stt: SttSpec = SttSpec()
    client_keys: ClientKeysSpec = ClientKeysSpec()
    flags: FlagsSpec = FlagsSpec()
    shadow: ShadowSpec = ShadowSpec()
    voice_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Voice name a client sends (e.g. OpenAI's 'alloy') -> a configured voice. OpenAI's voice "
                    "names that are not listed map to the first TTS model's first voice.")

    @model_validator(mode="after")
    def _roster(self) -> "SwitchboardConfig":
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate model names: {dupes}")
        embeddings = getattr(self.router.classifier, "embeddings_model", None)
        if embeddings in names or embeddings in RESERVED_MODEL_NAMES:
            raise ValueError(f"router.classifier.embeddings_model: {embeddings!r} is taken "
                             "(a roster model's name, or reserved)")
        if not any(m.family == "llm" for m in self.models):
            raise ValueError("the roster needs at least one model of family 'llm'")
        by_name = self.by_name()
        for route, chain in self.routes.items():
            family = ROUTE_FAMILY[route]
            seen = set()
            for i, name in enumerate(chain):
                where = f"routes.{route}[{i}]"
                if name in seen:
                    raise ValueError(f"{where}: {name!r} appears twice: a chain must not loop")
                seen.add(name)
                if name == LLM_ONLY:
                    if route not in LLM_ONLY_ROUTES:
                        raise ValueError(f"{where}: 'llm_only' cannot end the {route} route")
                    if i != len(chain) - 1:
                        raise ValueError(f"{where}: 'llm_only' must be the last step")
                    continue
                if name not in by_name:
                    raise ValueError(f"{where}: unknown model {name!r} (known: {sorted(by_name)})")
                if by_name[name].family != family:
                    raise ValueError(f"{where}: {name!r} is a {by_name[name].family} model, not {family}")
        for name in self.faults:
            if name not in by_name:
                raise ValueError(f"faults.{name}: unknown model")
        voices = self.voices()
        for alias, voice in self.voice_aliases.items():
            if voice not in voices:
                raise ValueError(f"voice_aliases.{alias}: {voice!r} is not a configured voice ({sorted(voices)})")
        return self

    def voices(self) -> dict[str, str]:
        """Every configured voice -> the TTS model that has it (first model wins)."""
        out: dict[str, str] = {}
        for model in self.models:
            if model.family == "tts":
                for voice in model.backend.voices:
                    out.setdefault(voice, model.name)
        return out

    def family(self, family: Family) -> list[ModelSpec]:
        return [m for m in self.models if m.family == family]

    def chain(self, route: Route) -> tuple[list[str], bool]:
        """The models of a route's failover chain, and whether it ends in the LLM-only path."""
        if route in self.routes:
            steps = self.routes[route]
            return [s for s in steps if s != LLM_ONLY], LLM_ONLY in steps
        return [m.name for m in self.family(ROUTE_FAMILY[route])], route in LLM_ONLY_ROUTES

    def by_name(self) -> dict[str, ModelSpec]:
        return {m.name: m for m in self.models}

    def default_model(self, family: Family) -> ModelSpec | None:
        return next((m for m in self.models if m.family == family), None)
