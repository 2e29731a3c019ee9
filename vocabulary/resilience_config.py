"""Config of failover chains, breakers, retries and injected faults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from vocabulary.config_base import StrictModel
from vocabulary.routes import INTENTS
from vocabulary.text_pattern import MAX_PATTERN_CHARS, compile_pattern


class BreakerSpec(StrictModel):
    failure_threshold: int = Field(3, ge=1, description="Failures within the window that open the breaker.")
    window_s: float = Field(60.0, gt=0)
    cooldown_s: float = Field(30.0, gt=0, description="Open this long, then one request probes (half-open).")


class RetrySpec(StrictModel):
    retries: int = Field(1, ge=0, le=3, description="Retries of a retryable error on the same model.")
    backoff_ms: int = Field(50, ge=0, le=5000)
    min_budget_ms: int = Field(200, ge=0, description="No retry with less time than this left.")


class ResilienceSpec(StrictModel):
    breaker: BreakerSpec = BreakerSpec()
    retry: RetrySpec = RetrySpec()
    llm_only_reserve_ms: int = Field(
        5000, ge=0, description="At most this much of a request's time (and never more than half) is kept back "
                                "from a chain that ends in the LLM-only path, for that answer.")


class FaultCondition(StrictModel):
    """Which requests a fault fires for: every condition given must hold. Facts the request does not
    have (no image to measure, no intent decided yet, a health probe) fail the conditions on them."""

    intents: list[str] | None = Field(None, min_length=1, description=f"The switchboard's intent is one of these "
                                                                      f"({', '.join(INTENTS)}).")
    attachment: Literal["image", "audio", "none"] | None = Field(
        None, description="The request carries an image, audio, or no attachment at all.")
    text_regex: str | None = Field(
        None, max_length=MAX_PATTERN_CHARS,
        description="A regular expression found in the user's text (its first 4000 characters; `(?i)` for any "
                    "case; counted repeats up to {100}). A match that takes over 10 ms counts as none.")
    min_input_chars: int | None = Field(None, ge=0, description="The messages' text has at least this many characters.")
    max_input_chars: int | None = Field(None, ge=0, description="... at most this many.")
    min_rotation_deg: float | None = Field(None, ge=0, le=90, description="The image's text is skewed at least "
                                                                          "this much (degrees from level, 0-90).")
    max_rotation_deg: float | None = Field(None, ge=0, le=90, description="... at most this much.")
    min_contrast: float | None = Field(None, ge=0, le=1, description="The image's contrast (0-1) is at least this.")
    max_contrast: float | None = Field(None, ge=0, le=1, description="... at most this.")

    @field_validator("intents")
    @classmethod
    def _known_intents(cls, intents: list[str] | None) -> list[str] | None:
        unknown = [i for i in intents or () if i not in INTENTS]
        if unknown:
            raise ValueError(f"unknown intents {unknown}; use {', '.join(INTENTS)}")
        return intents

    @field_validator("text_regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            compile_pattern(pattern)
        return pattern

    @model_validator(mode="after")
    def _sane(self) -> "FaultCondition":
        if not self.model_dump(exclude_none=True):
            raise ValueError("give at least one condition, or leave out `when` for a fault on every request")
        for low, high in (("min_input_chars", "max_input_chars"), ("min_rotation_deg", "max_rotation_deg"),
                          ("min_contrast", "max_contrast")):
            if getattr(self, low) is not None and getattr(self, high) is not None and \
                    getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must not exceed {high}")
        return self


class FaultSpec(StrictModel):
    """PUT /api/admin/faults/{model} takes this body too."""

    error_rate: float = Field(0.0, ge=0, le=1, description="Share of calls that fail.")
    latency_ms: int = Field(0, ge=0, le=600_000, description="Added before each call.")
    hang: bool = Field(False, description="Never answer (the request's deadline cuts it).")
    corrupt: Literal["empty", "garbled"] | None = Field(None, description="Corrupt the output.")
    stream_break_after: int | None = Field(None, ge=0, description="A stream dies after this many chunks.")
    when: FaultCondition | None = Field(None, description="Only for requests that match this; "
                                                          "without it, for every call.")
