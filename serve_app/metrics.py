"""Prometheus metrics of the ingress (ray.serve.metrics; Ray exports them with the replica's tags)."""

from __future__ import annotations

import logging

from graphs.breaker import BreakerState

logger = logging.getLogger(f"ray.serve.switchboard.{__name__}")
BREAKER_LEVEL = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class IngressMetrics:
    def __init__(self) -> None:
        from ray.serve import metrics

        self._transitions = metrics.Counter(
            "switchboard_breaker_transitions", description="Circuit breaker state changes.",
            tag_keys=("model", "from_state", "to_state"))
        self._breaker = metrics.Gauge(
            "switchboard_breaker_state", description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            tag_keys=("model",))
        self._requests = metrics.Counter(
            "switchboard_requests", description="Requests by intent, answering model and outcome.",
            tag_keys=("intent", "model", "outcome", "degraded"))

    def breaker_changed(self, model: str, old: BreakerState, new: BreakerState) -> None:
        logger.warning("circuit breaker state change",
                       extra={"model": model, "from_state": old.value, "to_state": new.value})
        self._transitions.inc(tags={"model": model, "from_state": old.value, "to_state": new.value})
        self._breaker.set(BREAKER_LEVEL[new], tags={"model": model})

    def request_done(self, intent: str | None, model: str | None, outcome: str, degraded: bool) -> None:
        self._requests.inc(tags={"intent": intent or "none", "model": model or "none", "outcome": outcome,
                                 "degraded": str(degraded).lower()})
