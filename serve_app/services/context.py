"""Per-request state the services share: the id, the deadline, and which models answered."""

from __future__ import annotations

from dataclasses import dataclass, field

from graphs.deadline import Deadline
from graphs.failover import Failure


@dataclass
class RequestContext:
    request_id: str
    deadline: Deadline
    models: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # told to the LLM, so that its answer says so
    reasons: list[str] = field(default_factory=list)  # other reasons the answer is degraded (router fallback)
    intent: str | None = None
    agreement: float | None = None  # two OCR engines on the same image: 1 - CER

    @property
    def degraded(self) -> bool:
        return bool(self.failures or self.notes or self.reasons)

    def used(self, model: str, failures: list[Failure] = ()) -> None:
        if model not in self.models:
            self.models.append(model)
        self.failures.extend(failures)

    def headers(self) -> dict[str, str]:
        out = {"x-switchboard-models": ",".join(self.models),
               "x-switchboard-model": self.models[-1] if self.models else "",
               "x-switchboard-degraded": "true" if self.degraded else "false"}
        if self.intent:
            out["x-switchboard-intent"] = self.intent
        if self.failures:
            out["x-switchboard-failed"] = ",".join(dict.fromkeys(f.model for f in self.failures))
        return out

    def summary(self) -> dict:
        """The `switchboard` field of /api bodies and chat responses."""
        return {"models": self.models, "degraded": self.degraded,
                "failed": [f.describe() for f in self.failures], "notes": self.notes + self.reasons}
