"""Config of failover chains, breakers, retries and injected faults."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vocabulary.config_base import StrictModel


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


class FaultSpec(StrictModel):
    """PUT /api/admin/faults/{model} takes this body too."""

    error_rate: float = Field(0.0, ge=0, le=1, description="Share of calls that fail.")
    latency_ms: int = Field(0, ge=0, le=600_000, description="Added before each call.")
    hang: bool = Field(False, description="Never answer (the request's deadline cuts it).")
    corrupt: Literal["empty", "garbled"] | None = Field(None, description="Corrupt the output.")
    stream_break_after: int | None = Field(None, ge=0, description="A stream dies after this many chunks.")
